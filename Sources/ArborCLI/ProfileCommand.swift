import ArborEngine
import ArborProfiles
import ArborRuntime
import ArborStore
import ArgumentParser
import Foundation

/// `arbor profile …`: the cost profiles the speculation policy learned and stored.
struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "List, show and clear the learned cost profiles.",
        discussion: """
            The policy that plans speculative rounds learns the costs of each (device, drafter, \
            server, target) and stores them in <data dir>/profiles.sqlite; the data dir is \
            $ARBOR_DATA_DIR, else $XDG_DATA_HOME/arbor, else ~/.local/share/arbor. A corrupt \
            database is moved aside (profiles.sqlite.corrupt-<time>) and a fresh one started.
            """,
        subcommands: [List.self, Show.self, Clear.self, Vocab.self],
        defaultSubcommand: List.self
    )

    /// `--db PATH`, shared by the subcommands.
    struct DatabaseOption: ParsableArguments {
        @Option(name: .customLong("db"), help: "Profile database (default: <data dir>/profiles.sqlite).")
        var path: String?

        /// Opens the database, moving a corrupt one aside (with a warning on stderr).
        func open() throws -> ProfileStore {
            let path = path ?? ArborPaths.profileDatabase().path
            do {
                let (store, warning) = try ProfileStore.openOrRecover(path: path)
                if let warning { StandardStreams.error("warning: \(warning)\n") }
                return store
            } catch {
                StandardStreams.error("error: \(error)\n")
                throw ExitCode.failure
            }
        }
    }

    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// Left-aligned columns, two spaces apart (right-aligned where `right` says so).
    static func printTable(_ rows: [[String]], right: Set<Int> = []) {
        guard let columns = rows.map(\.count).max() else { return }
        let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: max(0, widths[c] - cell.count))
                if right.contains(c) { return pad + cell }
                return c == row.count - 1 ? cell : cell + pad
            }
            var line = cells.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            print(line)
        }
    }

    static func number(_ x: Double?, _ digits: Int = 2) -> String {
        guard let x else { return "-" }
        return String(format: "%.\(digits)f", x)
    }

    static func date(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone.current
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: d)
    }

    static func parseID(_ s: String) throws -> Int64 {
        guard let id = Int64(s), id > 0 else { throw ValidationError("'\(s)' is not a profile id (see `arbor profile list`)") }
        return id
    }

    /// Runs `body`, turning a store error into `error: …` on stderr and a failing exit.
    static func run<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ProfileStoreError {
            StandardStreams.error("error: \(error)\n")
            throw ExitCode.failure
        }
    }
}

extension ProfileCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the stored profiles.")

        @OptionGroup var database: DatabaseOption
        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() async throws {
            let store = try database.open()
            let summaries = try ProfileCommand.run { try store.list() }
            if json {
                try ProfileCommand.printJSON(summaries)
                return
            }
            guard !summaries.isEmpty else {
                print("no stored profiles in \(store.path)")
                return
            }
            let header = ["ID", "DEVICE", "DRAFTER", "SERVER", "TARGET", "ROUNDS", "UPDATED", "TARGET MS@1", "OVERHEAD MS", "DRAFT MS/STEP", "ACCEPTANCE"]
            let rows = summaries.map { s -> [String] in
                let numbers = s.problem == nil
                    ? [
                        ProfileCommand.number(s.targetMillisecondsPerToken), ProfileCommand.number(s.roundOverheadMilliseconds),
                        ProfileCommand.number(s.draftStepMilliseconds), ProfileCommand.number(s.meanDepthAcceptance, 3),
                    ]
                    : ["unreadable", "", "", ""]
                return ["\(s.id)", s.key.device, s.key.drafter, s.key.server, s.key.target, "\(s.rounds)", ProfileCommand.date(s.updatedAt)] + numbers
            }
            ProfileCommand.printTable([header] + rows, right: [0, 5, 7, 8, 9, 10])
            for s in summaries where s.problem != nil {
                StandardStreams.error("warning: profile \(s.id) is unreadable: \(s.problem ?? ""); `arbor profile clear \(s.id)` deletes it (the next run replaces it anyway)\n")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show everything a stored profile holds.")

        @OptionGroup var database: DatabaseOption
        @Argument(help: "The profile's id (see `arbor profile list`).")
        var id: String
        @Flag(help: "Print JSON (the stored profile plus its fitted lines).")
        var json = false

        func validate() throws { _ = try ProfileCommand.parseID(id) }

        /// `--json`: the row, the stored profile, and what is derived from it.
        struct Output: Encodable {
            struct Line: Encodable {
                var intercept: Double
                var slope: Double
                init(_ fit: LinearFit) { (intercept, slope) = fit.line }
            }
            var id: Int64
            var device, drafter, server, target: String
            var updatedAt: Date
            var rounds: Int
            var targetMillisecondsByBatch: [String: Double]
            var network, bytesUp, bytesDown: Line
            var profile: CostProfile

            enum CodingKeys: String, CodingKey {
                case id, device, drafter, server, target, updatedAt = "updated_at", rounds
                case targetMillisecondsByBatch = "target_ms_by_batch", network = "network_ms_fit"
                case bytesUp = "bytes_up_fit", bytesDown = "bytes_down_fit", profile
            }
        }

        func run() async throws {
            let id = try ProfileCommand.parseID(id)
            let store = try database.open()
            guard let record = try ProfileCommand.run({ try store.record(id: id) }) else {
                StandardStreams.error("error: no profile \(id) in \(store.path)\n")
                throw ExitCode.failure
            }
            let p = record.profile
            let measured = p.targetMilliseconds.indices.filter { p.targetMilliseconds[$0] > 0 }
            if json {
                try ProfileCommand.printJSON(Output(
                    id: record.id, device: record.key.device, drafter: record.key.drafter, server: record.key.server,
                    target: record.key.target, updatedAt: record.updatedAt, rounds: record.rounds,
                    targetMillisecondsByBatch: Dictionary(uniqueKeysWithValues: measured.map { ("\($0)", p.targetMilliseconds[$0]) }),
                    network: .init(p.network), bytesUp: .init(p.bytesUp), bytesDown: .init(p.bytesDown), profile: p
                ))
                return
            }
            print(text(record))
        }

        func text(_ record: ProfileRecord) -> String {
            let p = record.profile, n = ProfileCommand.number
            var out = """
                profile \(record.id)
                  device   \(record.key.device)
                  drafter  \(record.key.drafter)
                  server   \(record.key.server)
                  target   \(record.key.target)
                  updated  \(ProfileCommand.date(record.updatedAt))
                  rounds   \(p.rounds) (format version \(p.version))

                """
            let measured = p.targetMilliseconds.indices.filter { p.targetMilliseconds[$0] > 0 }
            out += "\ntarget compute by batch size (measured sizes):\n"
            if measured.isEmpty {
                out += "  not measured\n"
            } else {
                out += "  batch  ms       rounds\n"
                for b in measured {
                    out += "  " + "\(b)".padding(toLength: 5, withPad: " ", startingAt: 0) + "  "
                        + n(p.targetMilliseconds[b], 2).padding(toLength: 7, withPad: " ", startingAt: 0) + "  \(p.targetSamples[b])\n"
                }
            }
            out += "  sampling (logits to verdicts): \(n(p.samplingMilliseconds, 2)) ms per round\n"
            if p.targetJoulesPerMillisecond > 0 {
                out += "  energy: \(n(p.targetJoulesPerMillisecond * 1000, 2)) W (\(p.targetEnergySource?.rawValue ?? "unknown source"))\n"
            }
            out += "\nfits (exponentially weighted, recent rounds count more):\n"
            out += "  network   " + fit(p.network, unit: "ms", per: "node sent") + "\n"
            out += "  bytes up  " + fit(p.bytesUp, unit: "B", per: "node sent") + "\n"
            out += "  bytes dn  " + fit(p.bytesDown, unit: "B", per: "node accepted") + "\n"
            out += "  speed correction (measured ÷ predicted round time): \(n(p.speedCorrection, 3))\n"
            out += "\ndraft step by tree width:\n"
            let widths = p.draftStepMilliseconds.indices.filter { p.draftStepMilliseconds[$0] > 0 }
            if widths.isEmpty { out += "  not measured\n" }
            for w in widths {
                var line = "  width \(w + 1): \(n(p.draftStepMilliseconds[w], 3)) ms"
                if w < p.draftStepJoules.count, p.draftStepJoules[w] > 0 {
                    line += ", \(n(p.draftStepJoules[w], 4)) J (\(p.draftEnergySource?.rawValue ?? "unknown source"))"
                }
                out += line + "\n"
            }
            out += "\nacceptance calibration (drafter confidence → accepted / offered):\n"
            let bins = (0..<min(p.calibrationOffered.count, p.calibrationAccepted.count)).filter { p.calibrationOffered[$0] > 0 }
            if bins.isEmpty { out += "  no nodes offered yet\n" }
            for bin in bins {
                let rate = p.calibrationAccepted[bin] / p.calibrationOffered[bin]
                out += "  \(n(Double(bin) / 10, 1))–\(n(Double(bin + 1) / 10, 1)): \(n(p.calibrationAccepted[bin], 1)) / \(n(p.calibrationOffered[bin], 1)) = \(n(rate, 3))\n"
            }
            out += "\ndepth acceptance (P(depth d accepted | d − 1 accepted)):\n"
            if p.depthAcceptance.isEmpty {
                out += "  not measured (prior 0.6)\n"
            } else {
                out += "  " + p.depthAcceptance.enumerated().map { "d\($0 + 1) \(n($1, 3))" }.joined(separator: "  ") + "\n"
            }
            return String(out.dropLast())
        }

        func fit(_ f: LinearFit, unit: String, per: String) -> String {
            guard !f.isEmpty else { return "not measured" }
            let (a, b) = f.line
            let n = ProfileCommand.number
            return "\(n(a, 2)) \(unit) + \(n(b, 3)) \(unit) per \(per)"
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete one stored profile, or all of them.")

        @OptionGroup var database: DatabaseOption
        @Argument(help: "The profile's id (see `arbor profile list`).")
        var id: String?
        @Flag(help: "Delete every stored profile.")
        var all = false

        func validate() throws {
            if all == (id != nil) { throw ValidationError("give a profile id or --all (not both)") }
            if let id { _ = try ProfileCommand.parseID(id) }
        }

        func run() async throws {
            let store = try database.open()
            if all {
                let count = try ProfileCommand.run { try store.deleteAll() }
                print("deleted \(count) profile\(count == 1 ? "" : "s") from \(store.path)")
                return
            }
            let id = try ProfileCommand.parseID(id ?? "")
            let deleted = try ProfileCommand.run { () throws -> ProfileKey? in
                guard let key = try store.key(id: id) else { return nil }
                return try store.delete(id: id) ? key : nil
            }
            guard let key = deleted else {
                StandardStreams.error("error: no profile \(id) in \(store.path)\n")
                throw ExitCode.failure
            }
            print("deleted profile \(id): \(key)")
        }
    }
}

extension ProfileCommand {
    /// `arbor profile vocab`: count the tokens a target produces, for trimmed draft heads.
    struct Vocab: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count the tokens the target produces (VocabTrim), and show how many of them a trimmed draft head covers.",
            discussion: """
                Generates greedily with the target on the prompts of each set after the first \
                --skip (the first 20, which the benchmarks use, stay unseen) and adds the output \
                tokens' counts to the profile database, keyed by the target's vocabulary. \
                --corpus adds the counts of answer-like text tokenized with the target's \
                tokenizer (ShareGPT's assistant turns, HumanEval's solutions): far more text than \
                this CPU can generate. `--draft-vocab K` then keeps the K most frequent in a draft \
                model's output head. With --show, prints the coverage of K = 1k … 64k only.
                """)

        @OptionGroup var database: DatabaseOption
        @OptionGroup var model: ModelOptions
        @Option(name: .customLong("sets"), parsing: .upToNextOption, help: "Prompt sets to generate on.")
        var sets: [String] = ["humaneval", "mtbench"]
        @Option(help: "Prompts to skip at the start of each set (held out for benchmarks).")
        var skip = 20
        @Option(help: "Most prompts per set after the skipped ones.")
        var limit: Int?
        @Option(name: .customLong("max-tokens"), help: "Tokens generated per prompt.")
        var maxTokens = 128
        @Option(help: "Worker threads.")
        var threads = 2
        @Option(name: .customLong("corpus"), parsing: .upToNextOption, help: "Also count answer-like text of these sets (sharegpt, humaneval, mtbench).")
        var corpus: [String] = []
        @Option(name: .customLong("corpus-limit"), help: "Most records read from each corpus.")
        var corpusLimit = 4_000
        @Flag(name: .customLong("no-generate"), help: "Count the corpus only (no generation).")
        var noGenerate = false
        @Flag(help: "Only print the stored counts' coverage.")
        var show = false
        @Flag(help: "Delete the stored counts of this target's vocabulary.")
        var clear = false

        func run() async throws {
            let store = try database.open()
            let bundle = try ModelBundle.load(path: try model.resolve(), threads: threads)
            let key = VocabTrim.vocabularyKey(bundle.tokenizer)
            if clear {
                let n = try ProfileCommand.run { try store.clearTokenCounts(vocabulary: key) }
                print("deleted \(n) token counts of vocabulary \(key) from \(store.path)")
                return
            }
            if !show {
                for set in corpus {
                    // The benchmarks' first --skip prompts stay unseen (ShareGPT's corpus is read in
                    // file order, its prompts in a seeded order).
                    let all = try PromptStore().corpus(set, limit: set == "sharegpt" ? corpusLimit : nil)
                    let texts = Array(all.dropFirst(set == "sharegpt" ? 0 : skip).prefix(corpusLimit))
                    var counts: [Int32: Int] = [:]
                    for text in texts {
                        for t in bundle.tokenizer.encode(text, addSpecial: false, parseSpecial: false) { counts[t, default: 0] += 1 }
                    }
                    let tokens = counts.values.reduce(0, +)
                    StandardStreams.error("\(set): \(texts.count) texts, \(tokens) tokens\n")
                    try ProfileCommand.run { try store.addTokenCounts(vocabulary: key, counts) }
                }
            }
            if !show && !noGenerate {
                let generator = TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer)
                for set in sets {
                    var items = Array(try PromptsCommand.items(set, limit: nil).dropFirst(skip))
                    if let limit { items = Array(items.prefix(limit)) }
                    var counts: [Int32: Int] = [:]
                    var tokens = 0
                    for (i, item) in items.enumerated() {
                        let prompt = try bundle.chatTokens([ChatMessage(role: "user", content: item.userMessage)])
                        let r = try generator.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: maxTokens))
                        for t in r.tokens { counts[t, default: 0] += 1 }
                        tokens += r.tokens.count
                        StandardStreams.error("\r\(set): \(i + 1)/\(items.count) prompts, \(tokens) tokens")
                    }
                    StandardStreams.error("\n")
                    try ProfileCommand.run { try store.addTokenCounts(vocabulary: key, counts) }
                }
            }
            let counts = try ProfileCommand.run { try store.tokenCounts(vocabulary: key) }
            let total = counts.reduce(0) { $0 + $1.count }
            print("vocabulary \(key) (\(bundle.tokenizer.vocabularySize) tokens): \(counts.count) distinct tokens counted, \(total) occurrences, in \(store.path)")
            var rows = [["keep", "covers"]]
            for k in [1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536] where k < bundle.tokenizer.vocabularySize {
                rows.append(["\(k)", String(format: "%.2f %%", 100 * VocabTrim.coverage(counts: counts, keep: k))])
            }
            ProfileCommand.printTable(rows, right: [0, 1])
        }
    }
}
