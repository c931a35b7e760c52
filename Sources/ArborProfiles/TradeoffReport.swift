import ArborEngine
/// One point of a speed–cost trade-off run: a setting measured over a prompt set.
///
/// Every cost is derived from the measured resources (`ResourceUse`: target time and energy,
/// draft energy, bytes), so one run gives the point under every objective.
public struct TradeoffPoint: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// The cost-aware policy at one cs value.
        case adaptive
        /// A static baseline (server alone, one token per round trip, server-side speculation,
        /// a fixed chain, a fixed tree), or a variant of the policy shown apart from its curve.
        case baseline
        /// The policy held to a service level (a minimum speed or a maximum cost).
        case serviceLevel = "service_level"
    }

    public var name: String
    public var kind: Kind
    public var cs: Double?
    public var objective: Objective
    public var prompts = 0
    /// Tokens generated and decode time (each prompt's first target pass included, prefill not).
    public var tokens = 0
    public var decodeMilliseconds = 0.0
    /// Measured resources over the decode phase.
    public var resources = ResourceUse()
    /// Prompts whose output equals the reference setting's token for token (greedy).
    public var identical = 0
    public var compared = 0
    /// Per prompt, an FNV-1a hash of the output tokens (to compare outputs across runs).
    public var outputHashes: [String] = []
    public var speculative: SpeculativeStats?
    /// How the energy figures were obtained.
    public var draftEnergySource: EnergySource
    public var targetEnergySource: EnergySource?
    /// A note on how the setting was billed (e.g. server-side drafting billed as server time).
    public var billing: String?

    public init(name: String, kind: Kind, cs: Double?, objective: Objective, draftEnergySource: EnergySource) {
        self.name = name
        self.kind = kind
        self.cs = cs
        self.objective = objective
        self.draftEnergySource = draftEnergySource
    }

    /// Tokens per second of decoding: Σ(generated − 1) ÷ Σ decode time, `arbor generate`'s own definition.
    public var tokensPerSecond: Double { decodeMilliseconds > 0 ? Double(max(tokens - prompts, 0)) / decodeMilliseconds * 1000 : 0 }

    /// Cost per million generated tokens under `objective` at `rates`.
    public func costPerMillionTokens(_ objective: Objective, rates: CostRates) -> Double {
        tokens > 0 ? objective.cost(of: resources, rates: rates) / Double(tokens) * 1e6 : 0
    }

    /// The point's cost under every objective, per million tokens.
    public func costs(rates: CostRates) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: Objective.allCases.filter { $0 != .tps }.map { ($0.rawValue, costPerMillionTokens($0, rates: rates)) })
    }

    /// Adds one prompt's result.
    public mutating func add(_ r: GenerationResult, resources use: ResourceUse, reference: [Int32]?) {
        prompts += 1
        tokens += r.tokens.count
        decodeMilliseconds += r.stats.decodeMilliseconds
        resources = resources + use
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in r.tokens {
            for k in 0..<4 { h = (h ^ UInt64((UInt32(bitPattern: t) >> (8 * k)) & 0xFF)) &* 0x100_0000_01b3 }
        }
        outputHashes.append(String(h, radix: 16))
        if let reference {
            compared += 1
            if reference == r.tokens { identical += 1 }
        }
        if let sp = r.stats.speculative {
            if speculative == nil { speculative = sp } else { speculative!.merge(sp) }
            if let s = sp.cost?.targetEnergySource { targetEnergySource = s }
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, cs, objective, prompts, tokens, decodeMilliseconds = "decode_ms", resources, identical, compared
        case outputHashes = "output_hashes"
        case speculative, draftEnergySource = "draft_energy_source", targetEnergySource = "target_energy_source", billing
    }
}

/// A whole trade-off run: the points and what they were measured on.
public struct TradeoffReport: Codable, Sendable {
    public var label: String
    /// What was measured: the drafter, the server (`local` in process) and the target model.
    public var drafter = ""
    public var server = ""
    public var target = ""
    public var objective: Objective
    public var rates: CostRates
    public var promptSet: String
    public var maxTokens: Int
    public var points: [TradeoffPoint]

    public init(label: String, objective: Objective, rates: CostRates, promptSet: String, maxTokens: Int, points: [TradeoffPoint] = []) {
        self.label = label
        self.objective = objective
        self.rates = rates
        self.promptSet = promptSet
        self.maxTokens = maxTokens
        self.points = points
    }

    enum CodingKeys: String, CodingKey {
        case label, drafter, server, target, objective, rates, promptSet = "prompt_set", maxTokens = "max_tokens", points
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        label = try c.decode(String.self, forKey: .label)
        drafter = try c.decodeIfPresent(String.self, forKey: .drafter) ?? ""
        server = try c.decodeIfPresent(String.self, forKey: .server) ?? ""
        target = try c.decodeIfPresent(String.self, forKey: .target) ?? ""
        objective = try c.decode(Objective.self, forKey: .objective)
        rates = try c.decode(CostRates.self, forKey: .rates)
        promptSet = try c.decode(String.self, forKey: .promptSet)
        maxTokens = try c.decode(Int.self, forKey: .maxTokens)
        points = try c.decode([TradeoffPoint].self, forKey: .points)
    }

    /// Where a request that ran at `tokensPerSecond` and `costPerMillionTokens` (under this
    /// report's objective) sits on the adaptive curve: the nearest point, in relative distance.
    public func nearestAdaptivePoint(tokensPerSecond: Double, costPerMillionTokens: Double) -> TradeoffPoint? {
        let curve = points.filter { $0.kind == .adaptive }
        return curve.min { a, b in
            func d(_ p: TradeoffPoint) -> Double {
                let t = p.tokensPerSecond, c = p.costPerMillionTokens(objective, rates: rates)
                let dt = t > 0 ? (tokensPerSecond - t) / t : 0, dc = c > 0 ? (costPerMillionTokens - c) / c : 0
                return dt * dt + dc * dc
            }
            return d(a) < d(b)
        }
    }

    /// One CSV row per point: speed, cost under every objective, acceptance, identity.
    public var csv: String {
        let objectives = Objective.allCases.filter { $0 != .tps }
        var lines = ["label,prompt_set,setting,kind,cs,prompts,tokens,tokens_per_second,"
            + objectives.map { "\($0.rawValue)_per_mtok" }.joined(separator: ",")
            + ",target_ms,target_j,draft_j,bytes_up,bytes_down,acceptance,mean_accepted_length,identical,compared,drafted_ahead,ahead_used,draft_energy,target_energy"]
        for p in points {
            let c = p.costs(rates: rates)
            let sp = p.speculative
            var fields = [label, promptSet, p.name, p.kind.rawValue, p.cs.map { "\($0)" } ?? "", "\(p.prompts)", "\(p.tokens)", "\(p.tokensPerSecond)"]
            fields += objectives.map { "\(c[$0.rawValue] ?? 0)" }
            fields += ["\(p.resources.targetMilliseconds)", "\(p.resources.targetJoules)", "\(p.resources.draftJoules)",
                       "\(p.resources.bytesUp)", "\(p.resources.bytesDown)", "\(sp?.acceptanceRate ?? 0)", "\(sp?.meanAcceptedLength ?? 1)",
                       "\(p.identical)", "\(p.compared)", "\(sp?.proactive.started ?? 0)", "\(sp?.proactive.hits ?? 0)",
                       p.draftEnergySource.rawValue, p.targetEnergySource?.rawValue ?? ""]
            lines.append(fields.map { $0.contains(",") ? "\"\($0)\"" : $0 }.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
