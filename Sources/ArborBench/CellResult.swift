import ArborEngine
import Foundation

/// p50 / p95 / p99 of a sample (nearest rank), in the sample's unit.
public struct Percentiles: Codable, Sendable, Equatable {
    public var p50: Double
    public var p95: Double
    public var p99: Double

    public init(_ samples: [Double]) {
        let s = samples.sorted()
        func rank(_ q: Double) -> Double {
            guard !s.isEmpty else { return 0 }
            // Nearest rank: the smallest value with at least q of the sample at or below it.
            let i = Int((q * Double(s.count)).rounded(.up)) - 1
            return s[min(max(i, 0), s.count - 1)]
        }
        p50 = rank(0.50)
        p95 = rank(0.95)
        p99 = rank(0.99)
    }
}

/// What one prompt of a cell measured. Times come from `MonotonicClock` around the request, the
/// same way for every setting: time to first token is the wait for the first text; decoding is
/// everything after it, over the tokens that came after it.
public struct PromptRecord: Codable, Sendable, Equatable {
    public var set: String
    public var index: Int
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Tokens that had arrived with the first text (1 for plain decoding; a first speculative
    /// round may bring several).
    public var firstTokens: Int
    public var ttftMs: Double
    public var endToEndMs: Double
    /// FNV-1a of the output token ids: equal outputs, equal hashes (greedy identity checks).
    public var outputHash: UInt64
    /// The drafter that served the request (the router's pick for `auto`).
    public var drafter: String

    /// Decode time after the first text, per token after it (vLLM's TPOT).
    public var decodeMs: Double { max(0, endToEndMs - ttftMs) }
    public var decodeTokens: Int { max(0, generatedTokens - firstTokens) }
    public var tpotMs: Double? { decodeTokens > 0 ? decodeMs / Double(decodeTokens) : nil }

    public static func hash(_ tokens: [Int32]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in tokens {
            for b in withUnsafeBytes(of: t.littleEndian, Array.init) {
                h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3
            }
        }
        return h
    }
}

/// A finished cell: its spec, every prompt's record, and the aggregates the report shows.
public struct CellResult: Codable, Sendable {
    public var spec: CellSpec
    /// The run settings this cell's numbers depend on besides its spec (target, models, tokens).
    public var fingerprint: String
    public var records: [PromptRecord]
    public var speculative: SpeculativeStats?
    public var transport: TransportStats?
    public var measuredUse: ResourceUse?
    public var peakRSSMiB: Double
    public var finished: String

    /// Σ decoded tokens ÷ Σ decode time (every setting timed the same way).
    public var tokensPerSecond: Double {
        let ms = records.reduce(0) { $0 + $1.decodeMs }
        return ms > 0 ? Double(records.reduce(0) { $0 + $1.decodeTokens }) / (ms / 1000) : 0
    }

    public var generatedTokens: Int { records.reduce(0) { $0 + $1.generatedTokens } }
    public var ttft: Percentiles { Percentiles(records.map(\.ttftMs)) }
    public var tpot: Percentiles { Percentiles(records.compactMap(\.tpotMs)) }
}

/// A cell as the report and the chart script read it (snake_case keys; `scripts/bench_report.py`).
public struct CellSummary: Codable, Sendable {
    public var id, experiment, kind, set, setting, drafter, mode: String
    public var delayMs: Int?
    public var ablationParameter: String?
    public var ablationValue: Int?
    public var prompts: Int
    public var generatedTokens: Int
    public var decodeMs: Double
    public var tokensPerSecond: Double
    public var speedup: Double?
    public var acceptanceRate: Double?
    public var meanAcceptedLength: Double?
    public var meanVerifyBatchSize: Double?
    public var acceptanceByDepth: [Double]?
    public var ttftMs: Percentiles
    public var tpotMs: Percentiles
    public var peakRssMib: Double
    public var bytesPerToken: Double?
    public var costPerMillionTokens: Double?
    public var objective: String?
    public var cs: Double?
    public var identicalToPlain: Int?
    public var routerChoices: [String: Int]?
    /// Per prompt set, for a mixed workload: tokens/s and the speedup over plain on that set's prompts.
    public var bySet: [String: SetSlice]?

    public struct SetSlice: Codable, Sendable {
        public var tokensPerSecond: Double
        public var speedup: Double?

        enum CodingKeys: String, CodingKey { case tokensPerSecond = "tokens_per_second", speedup }
    }

    enum CodingKeys: String, CodingKey {
        case id, experiment, kind, set, setting, drafter, mode, delayMs = "delay_ms", ablationParameter = "ablation_parameter"
        case ablationValue = "ablation_value", prompts, generatedTokens = "generated_tokens", decodeMs = "decode_ms"
        case tokensPerSecond = "tokens_per_second", speedup, acceptanceRate = "acceptance_rate"
        case meanAcceptedLength = "mean_accepted_length", meanVerifyBatchSize = "mean_verify_batch_size"
        case acceptanceByDepth = "acceptance_by_depth", ttftMs = "ttft_ms", tpotMs = "tpot_ms", peakRssMib = "peak_rss_mib"
        case bytesPerToken = "bytes_per_token", costPerMillionTokens = "cost_per_million_tokens", objective, cs
        case identicalToPlain = "identical_to_plain", routerChoices = "router_choices", bySet = "by_set"
    }

    /// Summarises `cell` against its baseline (nil when the plan had none), pricing resources with `rates`.
    public init(_ cell: CellResult, baseline: CellResult?, rates: CostRates) {
        let s = cell.spec
        (id, experiment, kind, set, setting, drafter, mode) = (s.id, s.experiment, s.kind.rawValue, s.set, s.setting, s.drafter, s.mode)
        (delayMs, ablationParameter, ablationValue, objective, cs) = (s.delayMs, s.ablationParameter, s.ablationValue, s.objective, s.cs)
        prompts = cell.records.count
        generatedTokens = cell.generatedTokens
        decodeMs = cell.records.reduce(0) { $0 + $1.decodeMs }
        tokensPerSecond = cell.tokensPerSecond
        if let b = baseline, b.tokensPerSecond > 0 { speedup = tokensPerSecond / b.tokensPerSecond }
        if let sp = cell.speculative, sp.rounds > 0, sp.draftedNodes > 0 || s.drafter != "none" {
            acceptanceRate = sp.acceptanceRate
            meanAcceptedLength = sp.meanAcceptedLength
            meanVerifyBatchSize = sp.meanVerifyBatchSize
            acceptanceByDepth = sp.acceptanceByDepth
        }
        ttftMs = cell.ttft
        tpotMs = cell.tpot
        peakRssMib = cell.peakRSSMiB
        if let t = cell.transport, generatedTokens > 0 { bytesPerToken = Double(t.bytesSent + t.bytesReceived) / Double(generatedTokens) }
        if let use = cell.measuredUse, generatedTokens > 0 {
            let o = s.objective.flatMap(Objective.init(rawValue:)) ?? .totalCost
            if objective == nil { objective = o.rawValue }
            costPerMillionTokens = o.cost(of: use, rates: rates) / Double(generatedTokens) * 1e6
        }
        if !s.sampled, let b = baseline {
            let plain = Dictionary(b.records.map { ("\($0.set)#\($0.index)", $0.outputHash) }, uniquingKeysWith: { a, _ in a })
            identicalToPlain = cell.records.filter { plain["\($0.set)#\($0.index)"] == $0.outputHash }.count
        }
        if s.drafter == "auto" {
            routerChoices = Dictionary(cell.records.map { ($0.drafter, 1) }, uniquingKeysWith: +)
        }
        if s.set == "mix" {
            var slices: [String: SetSlice] = [:]
            func rate(_ rs: [PromptRecord]) -> Double {
                let ms = rs.reduce(0) { $0 + $1.decodeMs }
                return ms > 0 ? Double(rs.reduce(0) { $0 + $1.decodeTokens }) / (ms / 1000) : 0
            }
            for name in Set(cell.records.map(\.set)) {
                let r = rate(cell.records.filter { $0.set == name })
                let base = baseline.map { rate($0.records.filter { $0.set == name }) }
                slices[name] = SetSlice(tokensPerSecond: r, speedup: base.flatMap { $0 > 0 ? r / $0 : nil })
            }
            bySet = slices
        }
    }
}
