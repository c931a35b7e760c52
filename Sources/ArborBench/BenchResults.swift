import ArborEngine
import Foundation

/// What `arbor bench run` writes as results.json (read by `scripts/bench_report.py`): the run's
/// settings and every cell summarised against its baseline.
public struct BenchResults: Codable, Sendable {
    public var config: String
    public var created: String
    public var target: String
    public var draftModels: [String]
    public var machine: Machine
    public var threads: Int
    public var maxTokens: Int
    public var energySource: String
    public var cells: [CellSummary]

    public struct Machine: Codable, Sendable {
        public var cpu: String
        public var cores: Int
    }

    enum CodingKeys: String, CodingKey {
        case config, created, target, draftModels = "draft_models", machine, threads, maxTokens = "max_tokens"
        case energySource = "energy_source", cells
    }

    public init(config path: String, plan: ExperimentPlan, cells: [CellResult]) {
        let c = plan.config
        config = path
        created = ISO8601DateFormatter().string(from: Date())
        target = c.models.target
        draftModels = [c.models.draft, c.models.crossDraft].compactMap { $0 }
        machine = Machine(cpu: Self.cpuModel() ?? "unknown", cores: ProcessResources.onlineCores)
        threads = c.runtime.threads
        maxTokens = c.runtime.maxTokens
        energySource = EnergyMeter().source.rawValue
        let byID = Dictionary(cells.map { ($0.spec.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.cells = cells.map { CellSummary($0, baseline: $0.spec.id == $0.spec.baselineID ? nil : byID[$0.spec.baselineID], rates: c.runtime.rates) }
    }

    /// One row per cell, the report's main table.
    public var table: ResultTable {
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "-" }
        return ResultTable(
            columns: ["cell", "tok/s", "speedup", "accept", "tokens/round", "verify batch", "TTFT p50/p95/p99 ms", "TPOT p50/p95/p99 ms",
                      "bytes/token", "cost/Mtok", "identical"],
            rows: cells.map { c in
                [c.id, f(c.tokensPerSecond, "%.1f"), f(c.speedup, "%.2fx"), c.acceptanceRate.map { BenchOutput.percent($0) } ?? "-",
                 f(c.meanAcceptedLength, "%.2f"), f(c.meanVerifyBatchSize, "%.2f"),
                 String(format: "%.0f/%.0f/%.0f", c.ttftMs.p50, c.ttftMs.p95, c.ttftMs.p99),
                 String(format: "%.1f/%.1f/%.1f", c.tpotMs.p50, c.tpotMs.p95, c.tpotMs.p99),
                 f(c.bytesPerToken, "%.0f"), f(c.costPerMillionTokens, "%.4g"), c.identicalToPlain.map { "\($0)/\(c.prompts)" } ?? "-"]
            })
    }

    static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) }
    }
}
