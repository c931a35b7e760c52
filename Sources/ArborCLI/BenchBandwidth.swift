import ArborBench
import ArborEngine
import ArborStore
import ArgumentParser
import Foundation

/// `arbor bench bandwidth`: memory read bandwidth and the decode speed it allows.
struct BenchBandwidthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bandwidth",
        abstract: "Measured memory bandwidth (GB/s) and the decode-speed limit it sets for a model.",
        discussion: """
            Streams through a buffer much larger than the last-level cache (default 1 GiB, filled \
            and faulted in first), each of --threads threads summing its chunks of floats with \
            8-lane SIMD. GB/s = 10^9 bytes / s. With --model, the decode limit is GB/s / bytes \
            read per token (every weight matrix once plus the F16 keys and values of the context, \
            at the mean context of a decode run: prompt + tokens/2). Unless --no-decode, each run \
            is a round of one decode run (as `arbor bench decode`) followed by 3 bandwidth passes, \
            so the fraction of the limit Arbor reaches is computed per round from measurements \
            taken under the same conditions; otherwise each run is one pass.
            """)

    @Option(
        help: ArgumentHelp(
            "Model alias (\(ModelCatalog.standard.aliases.joined(separator: ", "))) or path to a GGUF file, for the decode limit.",
            valueName: "alias|path"))
    var model: String?
    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("size-mib"), help: "Buffer size in MiB (a multiple of 16).")
    var sizeMiB: Int = 1024
    @Option(name: .customLong("tokens"), help: "Decode steps (for the decode run and the mean KV context).")
    var tokens: Int = 128
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length of the decode run.")
    var promptTokens: Int = 32
    @Flag(name: .customLong("no-decode"), help: "Only compute the limit; do not run the decode benchmark.")
    var noDecode = false

    /// Bandwidth passes after each decode run.
    static let passesPerRound = 3

    func validate() throws {
        guard sizeMiB >= 16 else { throw ValidationError("--size-mib must be at least 16") }
        guard tokens >= 1, promptTokens >= 1 else { throw ValidationError("--tokens and --prompt-tokens must be positive") }
    }

    struct PassRun: Codable {
        var ms: Double
        var gbPerSecond: Double
    }

    struct Limit: Codable {
        var weightBytesPerToken: Int
        /// Mean context of a decode run (prompt + tokens / 2) the KV bytes are computed at.
        var kvContext: Int
        var kvBytesPerToken: Int
        var bytesPerToken: Int
        /// Median GB/s / bytes per token.
        var decodeLimitTokensPerSecond: Double
        /// The same at the fastest pass.
        var decodeLimitAtMaxBandwidth: Double
    }

    struct Decode: Codable {
        var tokens: Int
        var promptTokens: Int
        var tokensPerSecond: BenchmarkSummary
        /// Per round: decode tokens/s ÷ the limit at that round's median bandwidth.
        var fractionsOfLimit: BenchmarkSummary
        /// The median of `fractionsOfLimit`.
        var fractionOfLimit: Double
    }

    struct Report: Codable {
        var benchmark = "bandwidth"
        var settings: BenchSettings
        var bufferBytes: Int
        var passesPerRound: Int
        var method: String
        var gbPerSecond: BenchmarkSummary
        var runs: [PassRun]
        var model: BenchModelInfo?
        var limit: Limit?
        var decode: Decode?
        var peakRssMib: Double
        var loadAverage: BenchLoad
    }

    func run() async throws {
        var load = BenchLoad.starting()
        var loaded: BenchLoadedModel?
        var kv = (context: 0, bytes: 0)
        if let model {
            let l = try BenchLoadedModel.load(model, threads: options.threads)
            let context = promptTokens + tokens / 2
            kv = (context, ModelBenchmark.kvBytesPerToken(l.bundle.model.configuration, context: context))
            loaded = l
        }
        let decoding = loaded != nil && !noDecode
        let prompt = decoding ? loaded!.benchmark.tokens(count: promptTokens) : []
        let cache = decoding ? loaded!.bundle.model.makeCache(capacity: prompt.count + tokens + 1) : nil
        let bytesPerToken = loaded.map { $0.info.weightBytesPerToken + kv.bytes } ?? 1

        // Rounds of (one decode run, `passes` bandwidth passes), so that both measurements see
        // the same conditions on a machine whose memory bandwidth varies with other load.
        let bench = BandwidthBenchmark(bytes: sizeMiB << 20, threads: options.threads)
        let passes = decoding ? Self.passesPerRound : 1
        var runs: [PassRun] = []
        var decodeTPS: [Double] = []
        var fractions: [Double] = []
        for round in 0..<(options.warmup + options.repeats) {
            var tps: Double?
            if decoding, let loaded, let cache {
                tps = try loaded.benchmark.decode(prompt: prompt, steps: tokens, cache: cache).tokensPerSecond
            }
            let roundRuns = (0..<passes).map { _ in
                let ms = bench.pass()
                return PassRun(ms: ms, gbPerSecond: bench.gigabytesPerSecond(ms: ms))
            }
            guard round >= options.warmup else { continue }
            runs += roundRuns
            if let tps {
                decodeTPS.append(tps)
                let gbs = BenchmarkSummary(roundRuns.map(\.gbPerSecond)).median
                fractions.append(tps / (gbs * 1e9 / Double(bytesPerToken)))
            }
        }
        load.finish()
        let gbs = BenchmarkSummary(runs.map(\.gbPerSecond))
        var limit: Limit?
        var decode: Decode?
        if let info = loaded?.info {
            limit = Limit(weightBytesPerToken: info.weightBytesPerToken, kvContext: kv.context, kvBytesPerToken: kv.bytes,
                          bytesPerToken: bytesPerToken, decodeLimitTokensPerSecond: gbs.median * 1e9 / Double(bytesPerToken),
                          decodeLimitAtMaxBandwidth: gbs.max * 1e9 / Double(bytesPerToken))
            if decoding {
                let f = BenchmarkSummary(fractions)
                decode = Decode(tokens: tokens, promptTokens: prompt.count, tokensPerSecond: BenchmarkSummary(decodeTPS),
                                fractionsOfLimit: f, fractionOfLimit: f.median)
            }
        }
        let report = Report(
            settings: options.settings, bufferBytes: bench.bytes, passesPerRound: passes,
            method: "GB/s = buffer bytes / wall time of one pass, \(BenchOutput.threadCount(options.threads)) summing 16 MiB chunks of floats with SIMD"
                + (decoding ? "; each round: one decode run (as bench decode), then \(passes) passes" : ""),
            gbPerSecond: gbs, runs: runs, model: loaded?.info, limit: limit, decode: decode,
            peakRssMib: ProcessResources.peakRSSMiB, loadAverage: load)
        if options.json {
            try BenchOutput.printJSON(report)
        } else {
            print(BenchOutput.heading("bandwidth", report.model, report.settings, report.loadAverage))
            print("  one pass = read \(BenchOutput.mib(bench.bytes)) with \(BenchOutput.threadCount(options.threads))")
            print(BenchOutput.table(["", "median", "min", "max", "spread"], [["GB/s"] + BenchOutput.cells(gbs)]))
            if let limit {
                print(String(format: "  bytes per token: %@ weights + %@ KV (context %d) = %@",
                             BenchOutput.mib(limit.weightBytesPerToken), BenchOutput.mib(limit.kvBytesPerToken),
                             limit.kvContext, BenchOutput.mib(limit.bytesPerToken)))
                print(String(format: "  decode limit: %.1f tokens/s at the median bandwidth (%.1f at the max)",
                             limit.decodeLimitTokensPerSecond, limit.decodeLimitAtMaxBandwidth))
            }
            if let decode {
                print(String(format: "  measured decode: %.1f tokens/s (median of %d runs); per round %.0f%% of the limit (%.0f%%–%.0f%%)",
                             decode.tokensPerSecond.median, decode.tokensPerSecond.count, decode.fractionOfLimit * 100,
                             decode.fractionsOfLimit.min * 100, decode.fractionsOfLimit.max * 100))
            }
            print(String(format: "  peak RSS %.1f MiB", report.peakRssMib))
        }
    }
}
