import ArborEngine
import Foundation

/// The settings every `arbor bench` measurement reports.
public struct BenchSettings: Codable {
    public var threads: Int
    public var `repeat`: Int
    public var warmup: Int
    public var cores: Int

    public init(threads: Int, repeat: Int, warmup: Int, cores: Int) {
        self.threads = threads
        self.repeat = `repeat`
        self.warmup = warmup
        self.cores = cores
    }
}

/// What was benchmarked.
public struct BenchModelInfo: Codable {
    public var model: String
    public var path: String
    public var architecture: String
    public var fileBytes: Int
    public var weightBytesPerToken: Int
    public var layers: Int
    public var embeddingLength: Int
    public var vocabularySize: Int
    public var loadMs: Double

    public init(model: String, path: String, architecture: String, fileBytes: Int, weightBytesPerToken: Int, layers: Int,
                embeddingLength: Int, vocabularySize: Int, loadMs: Double) {
        self.model = model
        self.path = path
        self.architecture = architecture
        self.fileBytes = fileBytes
        self.weightBytesPerToken = weightBytesPerToken
        self.layers = layers
        self.embeddingLength = embeddingLength
        self.vocabularySize = vocabularySize
        self.loadMs = loadMs
    }
}

/// How busy the machine was: the 1/5/15-minute load averages when a benchmark started and
/// ended, and the CPU time the hypervisor stole from this virtual machine in between.
public struct BenchLoad: Codable {
    public var start: [Double]
    public var end: [Double]
    /// Steal time over all CPUs between start and end (ms); nil where unknown.
    public var stealMs: Double?
    private var stealStart: Double?
    private var clockStart: UInt64 = 0
    /// Wall time between start and end (ms).
    public var wallMs: Double = 0

    enum CodingKeys: String, CodingKey { case start, end, stealMs, wallMs }

    public static func starting() -> BenchLoad {
        var l = BenchLoad(start: ProcessResources.loadAverage, end: [])
        l.stealStart = ProcessResources.stealMilliseconds
        l.clockStart = MonotonicClock.now
        return l
    }

    public mutating func finish() {
        end = ProcessResources.loadAverage
        wallMs = MonotonicClock.millisecondsSince(clockStart)
        if let a = stealStart, let b = ProcessResources.stealMilliseconds { stealMs = b - a }
    }

    public var text: String {
        func f(_ l: [Double]) -> String { l.first.map { String(format: "%.2f", $0) } ?? "?" }
        var t = "load avg \(f(start)) → \(f(end))"
        if let stealMs, wallMs > 0 { t += String(format: ", steal %.0f%% of a core", stealMs / wallMs * 100) }
        return t
    }
}

/// One timed run.
public struct BenchRun: Codable {
    public var ms: Double
    public var tokensPerSecond: Double
    /// Process CPU time (user + system, all threads) during the timed part.
    public var cpuMs: Double
    public var peakRssMib: Double

    public init(ms: Double, tokensPerSecond: Double, cpuMs: Double, peakRssMib: Double) {
        self.ms = ms
        self.tokensPerSecond = tokensPerSecond
        self.cpuMs = cpuMs
        self.peakRssMib = peakRssMib
    }

    /// Times `body` (wall and CPU) as a run of `tokens` tokens.
    public static func measure(tokens: Int, _ body: () throws -> Void) rethrows -> BenchRun {
        let cpu = ProcessResources.cpuMilliseconds
        let start = MonotonicClock.now
        try body()
        let ms = MonotonicClock.millisecondsSince(start)
        let cpuMs = ProcessResources.cpuMilliseconds - cpu
        return BenchRun(ms: ms, tokensPerSecond: ms > 0 ? Double(tokens) / (ms / 1000) : 0, cpuMs: cpuMs,
                        peakRssMib: ProcessResources.peakRSSMiB)
    }
}

/// Timed runs of a fixed amount of work (`tokens` tokens each) and their summaries.
public struct BenchTiming: Codable {
    public var ms: BenchmarkSummary
    public var tokensPerSecond: BenchmarkSummary
    public var runs: [BenchRun]

    public init(runs: [BenchRun]) {
        self.runs = runs
        ms = BenchmarkSummary(runs.map(\.ms))
        tokensPerSecond = BenchmarkSummary(runs.map(\.tokensPerSecond))
    }
}

public enum BenchOutput {
    /// Prints `value` as one JSON object (snake_case keys, sorted).
    public static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// Left-aligns the first column and right-aligns the others.
    public static func table(_ header: [String], _ rows: [[String]], indent: String = "  ") -> String {
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
    public static func cells(_ s: BenchmarkSummary, _ format: String = "%.2f") -> [String] {
        [String(format: format, s.median), String(format: format, s.min), String(format: format, s.max), percent(s.spread)]
    }

    public static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }

    /// "CPU: 1.62 of 2 threads busy" — process CPU time / wall time over the timed runs.
    public static func cpuLine(_ runs: [BenchRun], threads: Int) -> String {
        let wall = runs.reduce(0) { $0 + $1.ms }, cpu = runs.reduce(0) { $0 + $1.cpuMs }
        return String(format: "  CPU busy during timed runs: %.2f cores (of %@; the rest of the wall time went to other processes)",
                      wall > 0 ? cpu / wall : 0, threadCount(threads))
    }

    public static func threadCount(_ n: Int) -> String { n == 1 ? "1 thread" : "\(n) threads" }

    public static func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    public static func heading(_ name: String, _ model: BenchModelInfo?, _ settings: BenchSettings, _ load: BenchLoad) -> String {
        let what = model.map { "\($0.model) (\($0.architecture), \(mib($0.fileBytes)))" } ?? "machine"
        return "arbor bench \(name): \(what)\n  \(threadCount(settings.threads)) on \(settings.cores) cores, "
            + "\(settings.repeat) timed runs after \(settings.warmup) warmup, \(load.text)"
    }
}

/// Rows of results with named columns: the one report shape every benchmark prints as an
/// aligned table on a terminal, or as CSV for spreadsheets and charts (JSON comes from the
/// rows' own `Codable` form).
public struct ResultTable: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[String]]

    public init(columns: [String], rows: [[String]] = []) {
        self.columns = columns
        self.rows = rows
    }

    /// The first column left-aligned, the others right-aligned.
    public func text(indent: String = "  ") -> String { BenchOutput.table(columns, rows, indent: indent) }

    /// RFC 4180 CSV: a header line, then one line per row; cells with commas, quotes or line
    /// breaks are quoted.
    public var csv: String {
        func cell(_ c: String) -> String {
            c.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + c.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : c
        }
        return ([columns] + rows).map { $0.map(cell).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}
