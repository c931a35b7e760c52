import ArborBench
import ArborEngine
import ArborProfiles
import ArborRuntime
import ArborStore
import ArgumentParser
import Foundation

/// `arbor bench spec`: plain decoding vs each drafter on HumanEval / MT-bench prompts.
struct BenchSpecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec",
        abstract: "Speculative decoding on prompt sets: tokens/s, speedup, acceptance.",
        discussion: """
            Each prompt (the chat-formatted user message, see `arbor prompts show`) is generated \
            with plain decoding first, then with each setting, greedy (and with --sampled also \
            at temperature 0.7, top-p 0.9, one seed per prompt). Speedup = tokens/s ÷ plain's on \
            the same prompts and mode. Greedy rows also count outputs identical to plain's (they \
            must all be). Settings: plain, ngram, ngram-chain, suffix, suffix-chain, model-chain, \
            model-tree, model-chain-trim, model-tree-trim, cross-chain, suffix+cross; `*-chain` drafts \
            width 1, the others trees of --max-nodes (adaptive unless --fixed-tree). `*-trim` \
            drafts with the draft head cut to the --draft-vocab tokens the target produces most \
            (VocabTrim; counts from `arbor profile vocab`). `cross-chain` drafts with \
            --cross-draft, a model of another vocabulary, through text; `suffix+cross` merges \
            the suffix tree with it, asking the model only when the suffix tree falls short. The \
            suffix drafter keeps its index across the prompts of a set.
            """)

    @Option(name: .long, help: ArgumentHelp("Target model.", valueName: "alias|path"))
    var model = "qwen2.5-coder-1.5b"
    @Option(name: .customLong("draft"), help: ArgumentHelp("Draft model for model-* settings.", valueName: "alias|path"))
    var draftModel = "qwen2.5-coder-0.5b"
    @Option(name: .customLong("cross-draft"), help: ArgumentHelp("Draft model of another vocabulary for the cross-chain setting.", valueName: "alias|path"))
    var crossDraftModel = "smollm2-135m"
    @Option(name: .customLong("draft-vocab"), help: "Tokens kept in the draft head for model-*-trim settings (VocabTrim; counts from `arbor profile vocab`).")
    var draftVocab = 16_384
    @OptionGroup var profile: ProfileOptions
    @Option(name: .customLong("sets"), parsing: .upToNextOption, help: "Prompt sets (humaneval, mtbench).")
    var sets: [String] = ["humaneval", "mtbench"]
    @Option(help: "First N prompts of each set.")
    var limit: Int = 20
    @Option(name: .customLong("max-tokens"), help: "Tokens generated per prompt (fewer if the model ends).")
    var maxTokens = 128
    @Option(name: .customLong("settings"), parsing: .upToNextOption, help: "Settings to run (plain always runs first).")
    var settingNames: [String] = ["ngram", "suffix", "model-chain", "model-tree"]
    @Option(name: .customLong("max-nodes"), help: "Tree budget: most nodes.")
    var maxNodes = 8
    @Option(name: .customLong("max-depth"), help: "Tree budget: deepest node.")
    var maxDepth = 6
    @Option(name: .customLong("max-width"), help: "Tree budget: most children per node.")
    var maxWidth = 3
    @Flag(name: .customLong("fixed-tree"), help: "Send the full budget every round (no adaptive sizing).")
    var fixedTree = false
    @Flag(help: "Also run sampled (temperature 0.7, top-p 0.9).")
    var sampled = false
    @Option(help: "Worker threads.")
    var threads = 2
    @Option(help: "Write the rows as JSON to this file (and CSV next to it, .csv).")
    var out: String?
    @Flag(help: "Print the rows as JSON instead of a table.")
    var json = false
    @Flag(help: "Print one line per prompt to stderr.")
    var verbose = false

    static let known = ["plain", "ngram", "ngram-chain", "suffix", "suffix-chain", "model-chain", "model-tree", "model-chain-trim",
                        "model-tree-trim", "cross-chain", "suffix+cross"]

    func validate() throws {
        for s in settingNames where !Self.known.contains(s) {
            throw ValidationError("unknown setting '\(s)' (known: \(Self.known.joined(separator: ", ")))")
        }
        guard limit >= 1, maxTokens >= 1, threads >= 1, maxNodes >= 1, maxDepth >= 1, maxWidth >= 1 else {
            throw ValidationError("--limit, --max-tokens, --threads and the budget must be at least 1")
        }
    }

    struct Report: Codable {
        var target: String
        var draft: String
        var threads: Int
        var maxTokens: Int
        var limit: Int
        var budget: DraftBudget
        var adaptive: Bool
        var rows: [SpeculativeBenchmarkRow]
    }

    func run() async throws {
        let target = try ModelBundle.load(path: try ModelOptions.resolve(model), threads: threads)
        let needsDraft = settingNames.contains { $0.hasPrefix("model") }
        let draft = needsDraft ? try ModelBundle.load(path: try ModelOptions.resolve(draftModel), threads: threads) : nil
        let needsCross = settingNames.contains { $0.contains("cross") }
        let crossDraft = needsCross ? try ModelBundle.load(path: try ModelOptions.resolve(crossDraftModel), threads: threads) : nil
        let crossName = crossDraftModel
        // VocabTrim: the same draft model with its head cut to the target's most frequent tokens.
        let trimmed = try settingNames.contains { $0.hasSuffix("-trim") }
            ? VocabTrim.trimmedDraft(draft!, keep: draftVocab, targetTokenizer: target.tokenizer,
                                     store: ProfileStore.openOrRecover(path: profile.databasePath).store)
            : nil
        let tree = DraftBudget(maxNodes: maxNodes, maxDepth: maxDepth, maxWidth: maxWidth)
        let chain = DraftBudget(maxNodes: maxDepth, maxDepth: maxDepth, maxWidth: 1)
        let adaptive = !fixedTree
        let (targetTokenizer, targetName, draftName) = (target.tokenizer, model, draftModel)
        func setting(_ name: String) -> SpeculativeSetting {
            let budget = name.hasSuffix("chain") || name.hasSuffix("chain-trim") ? chain : tree
            let config = SpeculationConfiguration(budget: budget, adaptive: adaptive)
            switch name {
            case "ngram", "ngram-chain": return SpeculativeSetting(name: name, configuration: config) { NGramDrafter() }
            case "suffix", "suffix-chain": return SpeculativeSetting(name: name, configuration: config) { SuffixDrafter() }
            case "model-chain", "model-tree":
                let d = draft!
                return SpeculativeSetting(name: name, configuration: config) {
                    try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: draftName, targetTokenizer: targetTokenizer, targetName: targetName)
                }
            case "model-chain-trim", "model-tree-trim":
                let (d, m) = (draft!, trimmed!)
                return SpeculativeSetting(name: name, configuration: config) {
                    try ModelDrafter(model: m, tokenizer: d.tokenizer, name: draftName + "@\(m.outputTokens?.count ?? 0)",
                                     targetTokenizer: targetTokenizer, targetName: targetName)
                }
            case "suffix+cross":
                let d = crossDraft!
                return SpeculativeSetting(name: name, configuration: config) {
                    CompositeDrafter([SuffixDrafter(), CrossVocabularyDrafter(model: d.model, tokenizer: d.tokenizer, name: crossName, targetTokenizer: targetTokenizer)])
                }
            case "cross-chain":
                let d = crossDraft!
                return SpeculativeSetting(name: name, configuration: config) {
                    CrossVocabularyDrafter(model: d.model, tokenizer: d.tokenizer, name: crossName, targetTokenizer: targetTokenizer)
                }
            default: return SpeculativeSetting(name: "plain", configuration: config) { nil }
            }
        }
        let settings = [setting("plain")] + settingNames.filter { $0 != "plain" }.map(setting)

        var bench = SpeculativeBenchmark(verifier: LocalVerifier(model: target.model), tokenizer: target.tokenizer, maxTokens: maxTokens)
        if verbose {
            bench.progress = { name, i, r in
                let sp = r.stats.speculative
                StandardStreams.error(String(format: "  %@ #%d: %d tokens, %.1f tok/s, %.2f tokens/round\n",
                                             name, i, r.tokens.count, sp?.tokensPerSecond ?? 0, sp?.meanAcceptedLength ?? 0))
            }
        }
        var rows: [SpeculativeBenchmarkRow] = []
        for set in sets {
            let items = try PromptsCommand.items(set, limit: limit)
            let prompts = try items.map { try target.chatTokens([ChatMessage(role: "user", content: $0.userMessage)]) }
            StandardStreams.error("\(set): \(prompts.count) prompts, \(settings.count) settings, greedy\(sampled ? " and sampled" : "")\n")
            rows += try bench.run(promptSet: set, prompts: prompts, settings: settings, sampling: .greedy)
            if sampled {
                rows += try bench.run(promptSet: set, prompts: prompts, settings: settings, sampling: .benchmarkSampled(seed: 1234))
            }
        }
        let report = Report(target: model, draft: [needsDraft ? draftModel : nil, needsCross ? "cross " + crossDraftModel : nil].compactMap { $0 }.joined(separator: ", "), threads: threads, maxTokens: maxTokens, limit: limit,
                            budget: tree, adaptive: adaptive, rows: rows)
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(report).write(to: URL(fileURLWithPath: out))
            let csvPath = (out.hasSuffix(".json") ? String(out.dropLast(5)) : out) + ".csv"
            try SpeculativeBenchmarkRow.table(rows).csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
        }
        if json {
            try BenchOutput.printJSON(report)
            return
        }
        print("arbor bench spec — target \(model)\(report.draft.isEmpty ? "" : ", draft \(report.draft)"), \(threads) threads, \(maxTokens) tokens, first \(limit) prompts; tree budget \(maxNodes) nodes / depth \(maxDepth) / width \(maxWidth)\(adaptive ? ", adaptive" : ", fixed")")
        print(BenchOutput.table(
            ["set", "setting", "mode", "tok/s", "speedup", "accept", "tokens/round", "verify batch", "draft ms/step", "identical"],
            rows.map { r in
                [r.promptSet, r.setting, r.sampled ? "sampled" : "greedy", String(format: "%.1f", r.tokensPerSecond),
                 String(format: "%.2fx", r.speedup), BenchOutput.percent(r.acceptanceRate), String(format: "%.2f", r.meanAcceptedLength),
                 String(format: "%.2f", r.meanVerifyBatchSize),
                 r.speculative.draftSteps > 0 ? String(format: "%.2f", r.speculative.draftMillisecondsPerStep) : "-", r.identicalToPlain.map { "\($0)/\(r.prompts)" } ?? "-"]
            }))
    }
}
