import ArborBench
import ArborEngine
import ArgumentParser
import Foundation

/// `arbor bench decode`: greedy decoding speed, and time to first token from process start.
struct BenchDecodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Tokens/s generating N tokens greedily after a short prompt (EOS ignored).",
        discussion: """
            Each run empties the cache, prefills the prompt in one forward call and samples the \
            first token (untimed), then times N steps of (one-token forward + greedy sample). \
            tokens/s = N / time. The first run after the process starts also gives the time to \
            first token: wall time from process start (kernel start time, 10 ms resolution) to \
            the first sampled token, including argument parsing, model load and prefill.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("tokens"), help: "Timed decoding steps per run.")
    var steps: Int = 128
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length (the benchmark text's first tokens).")
    var promptTokens: Int = 32

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--tokens must be at least 1") }
        guard promptTokens >= 1 else { throw ValidationError("--prompt-tokens must be at least 1") }
    }

    struct TimeToFirstToken: Codable {
        /// Process start to the first sampled token; nil where the start time is unknown.
        var fromProcessStartMs: Double?
        /// Process start to the start of the command (runtime start-up, argument parsing).
        var startupMs: Double?
        /// Resolving --model and loading the model and tokenizer.
        var loadMs: Double
        /// Prefill of the prompt plus sampling the first token, in the first (cold) run.
        var prefillMs: Double
        var promptTokens: Int
        var resolutionMs: Double
    }

    struct Report: Codable {
        var benchmark = "decode"
        var model: BenchModelInfo
        var settings: BenchSettings
        var promptTokens: Int
        var tokens: Int
        var method: String
        var tokensPerSecond: BenchmarkSummary
        var msPerToken: BenchmarkSummary
        /// The part of ms/token spent sampling (EOG masking + greedy pick over the vocabulary).
        var sampleMsPerToken: BenchmarkSummary
        var ms: BenchmarkSummary
        var runs: [BenchRun]
        var timeToFirstToken: TimeToFirstToken
        /// Every run generated the same tokens (greedy decoding is deterministic).
        var deterministic: Bool
        var sample: String
        var peakRssMib: Double
        var loadAverage: BenchLoad
    }

    func run() async throws {
        let startup = ProcessResources.millisecondsSinceStart
        var load = BenchLoad.starting()
        let loaded = try BenchLoadedModel.load(model.model, threads: options.threads)
        let report = try Self.measure(loaded, steps: steps, promptTokens: promptTokens, options: options,
                                      startupMs: startup, load: &load)
        if options.json {
            try BenchOutput.printJSON(report)
        } else {
            print(BenchOutput.heading("decode", report.model, report.settings, report.loadAverage))
            print("  \(report.promptTokens)-token prompt, \(report.tokens) timed greedy steps (forward + sample), EOS ignored")
            print(BenchOutput.table(
                ["", "median", "min", "max", "spread"],
                [["tokens/s"] + BenchOutput.cells(report.tokensPerSecond),
                 ["ms/token"] + BenchOutput.cells(report.msPerToken, "%.3f"),
                 ["  sampling"] + BenchOutput.cells(report.sampleMsPerToken, "%.3f")]))
            print(BenchOutput.cpuLine(report.runs, threads: report.settings.threads))
            let t = report.timeToFirstToken
            let fromStart = t.fromProcessStartMs.map { String(format: "%.0f ms", $0) } ?? "unknown"
            let startup = t.startupMs.map { String(format: "%.0f ms", $0) } ?? "unknown"
            print(String(format: "  time to first token from process start: %@ (start-up %@, load %.0f ms, cold prefill of %d tokens + sample %.1f ms)",
                         fromStart, startup, t.loadMs, t.promptTokens, t.prefillMs))
            print(String(format: "  peak RSS %.1f MiB; deterministic: %@", report.peakRssMib, report.deterministic ? "yes" : "NO"))
            print("  output: \(report.sample.debugDescription)")
        }
    }

    /// Runs the decode benchmark on a freshly loaded model (the first run gives the time to first token).
    static func measure(_ loaded: BenchLoadedModel, steps: Int, promptTokens: Int, options: BenchOptions,
                        startupMs: Double?, load: inout BenchLoad) throws -> Report {
        let bench = loaded.benchmark
        let prompt = bench.tokens(count: promptTokens)
        let cache = loaded.bundle.model.makeCache(capacity: prompt.count + steps + 1)
        var ttft: TimeToFirstToken?
        var outputs: [[Int32]] = []
        var runs: [BenchRun] = []
        var sampleMs: [Double] = []
        for i in 0..<(options.warmup + options.repeats) {
            let r = try bench.decode(prompt: prompt, steps: steps, cache: cache) {
                if ttft == nil {
                    ttft = TimeToFirstToken(fromProcessStartMs: ProcessResources.millisecondsSinceStart,
                                            startupMs: startupMs, loadMs: loaded.info.loadMs, prefillMs: 0, promptTokens: prompt.count,
                                            resolutionMs: 10)
                }
            }
            if i == 0 { ttft?.prefillMs = r.prefillMs }
            outputs.append(r.generated)
            if i >= options.warmup {
                runs.append(BenchRun(ms: r.ms, tokensPerSecond: r.tokensPerSecond, cpuMs: r.cpuMs,
                                     peakRssMib: ProcessResources.peakRSSMiB))
                sampleMs.append(r.sampleMs / Double(steps))
            }
        }
        load.finish()
        let timing = BenchTiming(runs: runs)
        let text = loaded.bundle.tokenizer.decode(outputs[0])
        return Report(
            model: loaded.info, settings: options.settings, promptTokens: prompt.count, tokens: steps,
            method: "tokens/s = tokens / wall time of `tokens` x (one-token forward + greedy sample); prefill and the first sample untimed",
            tokensPerSecond: timing.tokensPerSecond,
            msPerToken: BenchmarkSummary(runs.map { $0.ms / Double(steps) }),
            sampleMsPerToken: BenchmarkSummary(sampleMs),
            ms: timing.ms, runs: runs, timeToFirstToken: ttft!,
            deterministic: outputs.allSatisfy { $0 == outputs[0] },
            sample: String(text.prefix(200)),
            peakRssMib: ProcessResources.peakRSSMiB, loadAverage: load)
    }
}
