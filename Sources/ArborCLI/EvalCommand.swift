import ArborBench
import ArborEngine
import ArborRuntime
import ArborStore
import ArgumentParser
import Foundation

/// `arbor eval --set humaneval`: pass@1 of plain and speculative decoding, tests run in a sandbox.
struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Quality: HumanEval pass@1 of plain decoding and of each drafter (tests run in a sandbox).",
        discussion: """
            Each problem is asked as a chat request (see `arbor prompts show humaneval`); the \
            reply's first Python block (or the whole reply) is completed into a program with the \
            problem's tests and run by python3 -I in a scratch directory, without network \
            (`unshare -rn`, where the kernel allows it), under CPU-time, memory and file-size \
            limits (--timeout, --memory-mb). Greedy completions must be identical between plain \
            and speculative decoding, and so their pass@1; sampled pass@1 (--sampled: temperature \
            0.7, top-p 0.9, one seed per problem) must agree within the 95% Wilson intervals.
            """)

    @Option(name: .customLong("set"), help: "Evaluation set (humaneval).")
    var set = "humaneval"
    @Option(help: "First N problems (default: all 164).")
    var limit: Int?
    @Option(name: .long, help: ArgumentHelp("Target model.", valueName: "alias|path"))
    var model = "qwen2.5-coder-1.5b"
    @Option(name: .customLong("draft"), help: ArgumentHelp("Draft model for the model drafter.", valueName: "alias|path"))
    var draftModel = "qwen2.5-coder-0.5b"
    @Option(name: .customLong("drafters"), parsing: .upToNextOption, help: "Drafters compared with plain decoding (ngram, suffix, model, cross:<alias>, auto, a+b).")
    var drafters: [String] = ["suffix"]
    @Option(name: .customLong("max-tokens"), help: "Tokens generated per problem.")
    var maxTokens = 384
    @Flag(help: "Also sample (temperature 0.7, top-p 0.9).")
    var sampled = false
    @Option(help: "Seconds of CPU time per test program.")
    var timeout = 10
    @Option(name: .customLong("memory-mb"), help: "Address-space limit per test program, MiB.")
    var memoryMB = 1024
    @Option(help: "Worker threads.")
    var threads = 2
    @Option(help: "Write the rows as JSON to this file.")
    var out: String?

    func validate() throws {
        guard set == "humaneval" else { throw ValidationError("--set: only humaneval has tests to run (got '\(set)')") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        guard maxTokens >= 1, threads >= 1, timeout >= 1, memoryMB >= 64 else {
            throw ValidationError("--max-tokens, --threads and --timeout must be at least 1, --memory-mb at least 64")
        }
        for d in drafters { _ = try DrafterChoice(parsing: d, draftModel: draftModel) }
    }

    func run() async throws {
        let store = PromptStore()
        let progress = StderrProgress()
        let path = try store.ensure(set, progress: progress.handler)
        progress.end()
        let problems = try HumanEvalProblem.load(path: path, limit: limit)
        let sandbox = try HumanEvalSandbox(timeoutSeconds: timeout, memoryBytes: memoryMB << 20)
        if !sandbox.isolatedNetwork {
            StandardStreams.error("warning: `unshare -rn` is not available here; test programs run without network isolation\n")
        }
        let (model, draftModel, threads) = (model, draftModel, threads)
        var evaluation = HumanEvalEvaluation(problems: problems, drafters: drafters, maxTokens: maxTokens, sampled: sampled, sandbox: sandbox) { d in
            let choice = try DrafterChoice(parsing: d, draftModel: draftModel)
            var options = RuntimeOptions(model: model, draftModel: draftModel, drafter: choice, threads: threads)
            options.extraDraftModels = choice.draftModels.filter { $0 != draftModel }
            return try Runtime(options: options, resolveModel: { try ModelOptions.resolve($0) },
                               warn: { StandardStreams.error("warning: \($0)\n") })
        }
        let total = problems.count * (drafters.filter { $0 != "none" }.count + 1) * (sampled ? 2 : 1)
        let display = ProgressDisplay(total: total)
        evaluation.progress = { setting, mode, i, passed in
            display.advance(label: "\(setting) \(mode) #\(i + 1) \(passed ? "passed" : "failed")")
        }
        let rows = try evaluation.run()
        display.finish()
        print("arbor eval \(set): \(problems.count) problems, target \(model), \(maxTokens) tokens, sandbox: "
              + "\(sandbox.isolatedNetwork ? "no network, " : "")\(timeout) s CPU, \(memoryMB) MiB")
        print(ResultTable(
            columns: ["setting", "mode", "pass@1", "95% interval", "tok/s", "identical", "agrees with plain"],
            rows: rows.map { r in
                [r.setting, r.mode, String(format: "%.1f%% (%d/%d)", r.passAt1.rate * 100, r.passAt1.passed, r.passAt1.total),
                 String(format: "%.1f–%.1f%%", r.passAt1.lower * 100, r.passAt1.upper * 100), String(format: "%.1f", r.tokensPerSecond),
                 r.identicalToPlain.map { "\($0)/\(problems.count)" } ?? "-", r.agreesWithPlain.map { $0 ? "yes" : "NO" } ?? "-"]
            }).text())
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(rows).write(to: URL(fileURLWithPath: out))
        }
        if rows.contains(where: { $0.agreesWithPlain == false }) {
            throw ValidationError("speculative pass@1 disagrees with plain decoding's (see the table)")
        }
    }
}
