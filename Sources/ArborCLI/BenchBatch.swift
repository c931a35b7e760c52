import ArborBench
import ArborEngine
import ArborModels
import ArgumentParser
import Foundation

/// `arbor bench batch`: the cost of scoring B tokens in one forward call.
struct BenchBatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Time to score B tokens in one forward call after a C-token context.",
        discussion: """
            The context is prefilled once (untimed). Each timed call scores B new tokens on top of \
            it, then the cache is rolled back with truncate(to: C), so every call sees the same \
            context. Runs are interleaved (one call per size per round) so a burst of load on a \
            shared machine hits all sizes alike. Causal batches always; with --tree also a balanced \
            binary tree (node i's parent is (i-1)/2, positions C + depth), the shape a speculative \
            verifier scores. Logits for every token by default (what a verifier needs); --logits \
            last computes only the last token's, like llama.cpp's prompt processing.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var options: BenchOptions
    @Option(help: "Context tokens in the cache before each scored batch.")
    var context: Int = 64
    @Option(help: "Comma-separated batch sizes.")
    var sizes: String = "1,2,4,8,16,32,64"
    @Flag(help: "Also score each size as a balanced binary tree.")
    var tree = false
    @Option(help: "Logits to compute: all (every token) or last.")
    var logits: String = "all"

    func validate() throws {
        guard context >= 1 else { throw ValidationError("--context must be at least 1") }
        _ = try parseSizeList(sizes, option: "--sizes")
        guard ModelBenchmark.LogitRows(rawValue: logits) != nil else {
            throw ValidationError("--logits must be 'all' or 'last'")
        }
    }

    struct SizeResult: Codable {
        var size: Int
        var ms: BenchmarkSummary
        /// Median ms of this size / median ms of B = 1 (of the same shape).
        var ratioToB1: Double?
        /// size / median seconds.
        var tokensPerSecond: Double
        var msPerToken: Double
        var runs: [BenchRun]
    }

    struct ShapeResult: Codable {
        var shape: ModelBenchmark.BatchShape
        var sizes: [SizeResult]
    }

    struct Report: Codable {
        var benchmark = "batch"
        var model: BenchModelInfo
        var settings: BenchSettings
        var context: Int
        var logits: ModelBenchmark.LogitRows
        var method: String
        var shapes: [ShapeResult]
        var peakRssMib: Double
        var loadAverage: BenchLoad
    }

    func run() async throws {
        var load = BenchLoad.starting()
        let sizeList = try parseSizeList(sizes, option: "--sizes")
        let rows = ModelBenchmark.LogitRows(rawValue: logits)!
        let loaded = try BenchLoadedModel.load(model.model, threads: options.threads)
        let bench = loaded.benchmark
        let maxSize = sizeList.max()!
        let stream = bench.tokens(count: context + maxSize)
        let cache = loaded.bundle.model.makeCache(capacity: context + maxSize)
        _ = try bench.prefill(prompt: Array(stream.prefix(context)), chunk: context, cache: cache)

        let shapes: [ModelBenchmark.BatchShape] = tree ? [.causal, .tree] : [.causal]
        let batches: [[ForwardBatch]] = shapes.map { shape in
            sizeList.map { b in
                ModelBenchmark.scoringBatch(Array(stream[context..<(context + b)]), context: context, shape: shape, logits: rows)
            }
        }
        var runs = [[[BenchRun]]](repeating: [[BenchRun]](repeating: [], count: sizeList.count), count: shapes.count)
        for round in 0..<(options.warmup + options.repeats) {
            for s in shapes.indices {
                for (k, b) in sizeList.enumerated() {
                    let cpu = ProcessResources.cpuMilliseconds
                    let ms = try bench.score(batches[s][k], context: context, cache: cache)
                    let cpuMs = ProcessResources.cpuMilliseconds - cpu
                    if round >= options.warmup {
                        runs[s][k].append(BenchRun(ms: ms, tokensPerSecond: Double(b) / (ms / 1000), cpuMs: cpuMs,
                                                   peakRssMib: ProcessResources.peakRSSMiB))
                    }
                }
            }
        }
        load.finish()

        let results = shapes.indices.map { s in
            let medians = runs[s].map { BenchmarkSummary($0.map(\.ms)).median }
            let b1 = sizeList.firstIndex(of: 1).map { medians[$0] }
            return ShapeResult(shape: shapes[s], sizes: sizeList.indices.map { k in
                let summary = BenchmarkSummary(runs[s][k].map(\.ms))
                return SizeResult(
                    size: sizeList[k], ms: summary, ratioToB1: b1.map { summary.median / $0 },
                    tokensPerSecond: Double(sizeList[k]) / (summary.median / 1000),
                    msPerToken: summary.median / Double(sizeList[k]), runs: runs[s][k])
            })
        }
        let report = Report(
            model: loaded.info, settings: options.settings, context: context, logits: rows,
            method: "wall time of one forward call scoring B tokens after a \(context)-token context; cache truncated back to \(context) after each call",
            shapes: results, peakRssMib: ProcessResources.peakRSSMiB, loadAverage: load)
        if options.json {
            try BenchOutput.printJSON(report)
        } else {
            print(BenchOutput.heading("batch", report.model, report.settings, report.loadAverage))
            print("  \(context)-token context; logits for \(rows == .all ? "every token" : "the last token only")")
            for r in results {
                print("  \(r.shape == .causal ? "causal batch" : "balanced binary tree"):")
                print(BenchOutput.table(
                    ["B", "ms/call", "min", "max", "spread", "x B=1", "ms/token", "tokens/s"],
                    r.sizes.map { s in
                        ["\(s.size)"] + BenchOutput.cells(s.ms)
                            + [s.ratioToB1.map { String(format: "%.2f", $0) } ?? "-",
                               String(format: "%.2f", s.msPerToken), String(format: "%.1f", s.tokensPerSecond)]
                    }, indent: "    "))
            }
            print(BenchOutput.cpuLine(results.flatMap { $0.sizes.flatMap(\.runs) }, threads: options.threads))
            print(String(format: "  peak RSS %.1f MiB", report.peakRssMib))
        }
    }
}
