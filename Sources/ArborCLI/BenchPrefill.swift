import ArborBench
import ArborEngine
import ArgumentParser
import Foundation

/// `arbor bench prefill`: prompt-processing speed.
struct BenchPrefillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefill",
        abstract: "Tokens/s reading a prompt of N tokens into an empty cache (last token's logits only).",
        discussion: """
            Each run empties the cache and times the forward calls that read the prompt: one call \
            for the whole prompt by default (as llama.cpp does for a 512-token prompt with its \
            default 512-token micro-batch), or calls of --chunk tokens (the engine's generation \
            loop uses \(GenerationParameters().prefillChunk)), each computing its last token's logits only, as the \
            engine reads prompts (earlier versions computed every token's logits in the calls before \
            the last).
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("tokens"), help: "Prompt length in tokens.")
    var tokens: Int = 512
    @Option(help: "Tokens per forward call (0: the whole prompt in one call).")
    var chunk: Int = 0
    @Flag(help: "After the timed runs, check that the last token's logits are bit-identical to reading all but the last token in one call and the last alone.")
    var checkInvariance = false

    func validate() throws {
        guard tokens >= 1 else { throw ValidationError("--tokens must be at least 1") }
        guard chunk >= 0 else { throw ValidationError("--chunk must not be negative") }
    }

    struct Report: Codable {
        var benchmark = "prefill"
        var model: BenchModelInfo
        var settings: BenchSettings
        var promptTokens: Int
        /// Tokens per forward call.
        var chunk: Int
        var forwardCalls: Int
        var method: String
        var tokensPerSecond: BenchmarkSummary
        var ms: BenchmarkSummary
        var runs: [BenchRun]
        var peakRssMib: Double
        var loadAverage: BenchLoad
        /// With --check-invariance: whether the check passed.
        var batchInvariant: Bool?
    }

    func run() async throws {
        var load = BenchLoad.starting()
        let loaded = try BenchLoadedModel.load(model.model, threads: options.threads)
        let bench = loaded.benchmark
        let prompt = bench.tokens(count: tokens)
        let step = chunk == 0 ? prompt.count : min(chunk, prompt.count)
        let cache = loaded.bundle.model.makeCache(capacity: prompt.count)
        let samples = try benchmarkRepeats(warmup: options.warmup, repeats: options.repeats) { _ in
            let cpu = ProcessResources.cpuMilliseconds
            let ms = try bench.prefill(prompt: prompt, chunk: step, cache: cache)
            let cpuMs = ProcessResources.cpuMilliseconds - cpu
            return BenchRun(ms: ms, tokensPerSecond: Double(prompt.count) / (ms / 1000), cpuMs: cpuMs,
                            peakRssMib: ProcessResources.peakRSSMiB)
        }
        load.finish()
        let invariant = checkInvariance && prompt.count >= 2
            ? try bench.prefillIsBatchInvariant(prompt: prompt, chunk: step, cache: cache) : nil
        let timing = BenchTiming(runs: samples)
        let calls = (prompt.count + step - 1) / step
        let report = Report(
            model: loaded.info, settings: options.settings, promptTokens: prompt.count, chunk: step,
            forwardCalls: calls,
            method: "tokens/s = prompt tokens / wall time of the forward calls reading them into an empty cache",
            tokensPerSecond: timing.tokensPerSecond, ms: timing.ms, runs: samples,
            peakRssMib: ProcessResources.peakRSSMiB, loadAverage: load, batchInvariant: invariant)
        if options.json {
            try BenchOutput.printJSON(report)
        } else {
            print(BenchOutput.heading("prefill", report.model, report.settings, report.loadAverage))
            let how = calls == 1 ? "one forward call" : "\(calls) forward calls of \(step) tokens"
            print("  \(report.promptTokens)-token prompt in \(how), each computing its last token's logits only")
            print(BenchOutput.table(
                ["", "median", "min", "max", "spread"],
                [["tokens/s"] + BenchOutput.cells(report.tokensPerSecond),
                 ["ms"] + BenchOutput.cells(report.ms, "%.1f")]))
            print(BenchOutput.cpuLine(samples, threads: options.threads))
            print(String(format: "  peak RSS %.1f MiB", report.peakRssMib))
            if let invariant {
                print("  batch-invariant: \(invariant ? "yes" : "NO") (last token's logits, \(how) vs \(prompt.count - 1) tokens in one call and the last alone)")
            }
        }
    }
}
