import ArborEngine
import ArgumentParser
import Foundation

/// Flags every `arbor bench` subcommand shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Worker threads, the calling thread included.")
    var threads: Int = 2
    @Option(name: .customLong("repeat"), help: "Timed runs; the report gives their median, min, max and spread.")
    var repeats: Int = 3
    @Option(help: "Untimed runs before the timed ones.")
    var warmup: Int = 1
    @Flag(help: "Print one JSON object with the same data instead of a table.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
    }

    var settings: BenchSettings {
        BenchSettings(threads: threads, repeat: repeats, warmup: warmup, cores: BenchmarkProcess.onlineCores)
    }
}

struct BenchSettings: Codable {
    var threads: Int
    var `repeat`: Int
    var warmup: Int
    var cores: Int
}

/// How busy the machine was: the 1/5/15-minute load averages when a benchmark started and
/// ended, and the CPU time the hypervisor stole from this virtual machine in between.
struct BenchLoad: Codable {
    var start: [Double]
    var end: [Double]
    /// Steal time over all CPUs between start and end (ms); nil where unknown.
    var stealMs: Double?
    private var stealStart: Double?
    private var clockStart: UInt64 = 0
    /// Wall time between start and end (ms).
    var wallMs: Double = 0

    enum CodingKeys: String, CodingKey { case start, end, stealMs, wallMs }

    static func starting() -> BenchLoad {
        var l = BenchLoad(start: BenchmarkProcess.loadAverage, end: [])
        l.stealStart = BenchmarkProcess.stealMilliseconds
        l.clockStart = BenchmarkClock.now
        return l
    }

    mutating func finish() {
        end = BenchmarkProcess.loadAverage
        wallMs = BenchmarkClock.milliseconds(since: clockStart)
        if let a = stealStart, let b = BenchmarkProcess.stealMilliseconds { stealMs = b - a }
    }

    var text: String {
        func f(_ l: [Double]) -> String { l.first.map { String(format: "%.2f", $0) } ?? "?" }
        var t = "load avg \(f(start)) → \(f(end))"
        if let stealMs, wallMs > 0 { t += String(format: ", steal %.0f%% of a core", stealMs / wallMs * 100) }
        return t
    }
}

/// What was benchmarked.
struct BenchModelInfo: Codable {
    var model: String
    var path: String
    var architecture: String
    var fileBytes: Int
    var weightBytesPerToken: Int
    var layers: Int
    var embeddingLength: Int
    var vocabularySize: Int
    var loadMs: Double
}

/// One timed run.
struct BenchRun: Codable {
    var ms: Double
    var tokensPerSecond: Double
    /// Process CPU time (user + system, all threads) during the timed part.
    var cpuMs: Double
    var peakRssMib: Double

    /// Times `body` (wall and CPU) as a run of `tokens` tokens.
    static func measure(tokens: Int, _ body: () throws -> Void) rethrows -> BenchRun {
        let cpu = BenchmarkProcess.cpuMilliseconds
        let start = BenchmarkClock.now
        try body()
        let ms = BenchmarkClock.milliseconds(since: start)
        let cpuMs = BenchmarkProcess.cpuMilliseconds - cpu
        return BenchRun(ms: ms, tokensPerSecond: ms > 0 ? Double(tokens) / (ms / 1000) : 0, cpuMs: cpuMs,
                        peakRssMib: BenchmarkProcess.peakRSSMiB)
    }
}

/// Timed runs of a fixed amount of work (`tokens` tokens each) and their summaries.
struct BenchTiming: Codable {
    var ms: BenchmarkSummary
    var tokensPerSecond: BenchmarkSummary
    var runs: [BenchRun]

    init(runs: [BenchRun]) {
        self.runs = runs
        ms = BenchmarkSummary(runs.map(\.ms))
        tokensPerSecond = BenchmarkSummary(runs.map(\.tokensPerSecond))
    }
}

/// A loaded model plus what the report says about it.
struct BenchLoadedModel {
    let bundle: ModelBundle
    let info: BenchModelInfo
    let benchmark: ModelBenchmark

    /// Resolves `--model` (pulling a known alias if needed) and loads it with `threads`.
    static func load(_ aliasOrPath: String, threads: Int) throws -> BenchLoadedModel {
        let start = BenchmarkClock.now
        let path = try ModelOptions.resolve(aliasOrPath)
        let bundle = try ModelBundle.load(path: path, threads: threads)
        let loadMs = BenchmarkClock.milliseconds(since: start)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        let c = bundle.model.configuration
        let info = BenchModelInfo(
            model: aliasOrPath, path: path, architecture: c.architecture, fileBytes: size,
            weightBytesPerToken: bundle.model.weightBytesPerToken, layers: c.blockCount,
            embeddingLength: c.embeddingLength, vocabularySize: c.vocabularySize, loadMs: loadMs)
        return BenchLoadedModel(bundle: bundle, info: info,
                                benchmark: ModelBenchmark(model: bundle.model, tokenizer: bundle.tokenizer))
    }
}

enum BenchOutput {
    /// Prints `value` as one JSON object (snake_case keys, sorted).
    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// Left-aligns the first column and right-aligns the others.
    static func table(_ header: [String], _ rows: [[String]], indent: String = "  ") -> String {
        let all = [header] + rows
        let widths = (0..<header.count).map { c in all.map { $0.indices.contains(c) ? $0[c].count : 0 }.max() ?? 0 }
        func line(_ row: [String]) -> String {
            indent + row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: max(0, widths[c] - cell.count))
                return c == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        let rule = indent + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }

    /// A summary as table cells: median, min, max, spread.
    static func cells(_ s: BenchmarkSummary, _ format: String = "%.2f") -> [String] {
        [String(format: format, s.median), String(format: format, s.min), String(format: format, s.max), percent(s.spread)]
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }

    /// "CPU: 1.62 of 2 threads busy" — process CPU time / wall time over the timed runs.
    static func cpuLine(_ runs: [BenchRun], threads: Int) -> String {
        let wall = runs.reduce(0) { $0 + $1.ms }, cpu = runs.reduce(0) { $0 + $1.cpuMs }
        return String(format: "  CPU busy during timed runs: %.2f cores (of %@; the rest of the wall time went to other processes)",
                      wall > 0 ? cpu / wall : 0, threadCount(threads))
    }

    static func threadCount(_ n: Int) -> String { n == 1 ? "1 thread" : "\(n) threads" }

    static func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    static func heading(_ name: String, _ model: BenchModelInfo?, _ settings: BenchSettings, _ load: BenchLoad) -> String {
        let what = model.map { "\($0.model) (\($0.architecture), \(mib($0.fileBytes)))" } ?? "machine"
        return "arbor bench \(name): \(what)\n  \(threadCount(settings.threads)) on \(settings.cores) cores, "
            + "\(settings.repeat) timed runs after \(settings.warmup) warmup, \(load.text)"
    }
}

/// Parses "1,2,4" into positive integers.
func parseSizeList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 1 }) else {
        throw ValidationError("\(option) takes a comma-separated list of positive integers, got '\(text)'")
    }
    return values
}
