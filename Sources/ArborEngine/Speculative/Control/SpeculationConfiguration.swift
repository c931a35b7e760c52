/// Limits and preferences of speculative generation.
public struct SpeculationConfiguration: Sendable, Equatable, Codable {
    /// Largest tree the drafter may propose in one round.
    public var budget: DraftBudget
    /// Choose each round's tree size from measured costs and acceptance (including not drafting
    /// at all). When false every round drafts and sends the full budget.
    public var adaptive: Bool
    /// The objective, the cs knob, an optional service level, and the prices.
    public var preferences: CostPreferences
    /// Draft the next tree while the target verifies this one, when the policy expects it to pay
    /// (needs a `PipelinedVerifier` and a drafter that costs time; deterministic drafts only).
    public var proactive: Bool
    /// Active power of one busy core of this device, W, for modelled energy.
    public var wattsPerCore: Double
    /// Most tokens one run-ahead round may ask a remote target to decode by itself (when the
    /// server offers it and the policy finds it pays); 0 or 1: never run ahead.
    public var maxRunAhead: Int
    /// A selected tree with fewer nodes than this is not sent (llama.cpp's `speculative.n_min`):
    /// the round goes plain instead. 0: any tree is sent.
    public var minDraftNodes = 0
    /// Share of the tokens decoded without drafting (their score under the preferences) that
    /// probes of drafting may lose against the chosen plan (`RoundPolicy`); 1 % by default.
    public var explorationShare = 0.01
    /// Let a drafted round go past its planned depth while the draft's path stays likely enough
    /// that one more level pays (`DraftDeepening`; adaptive sizing with a drafter that supports it).
    /// Off by default: on MT-bench behind 20 and 80 ms it saved no measurable cost at cs = 1 and
    /// cost 12 % of the speed there (docs/tradeoff/2026-12-07-mtbench-deepening).
    public var deepening = false

    public init(budget: DraftBudget = DraftBudget(maxNodes: 16, maxDepth: 8, maxWidth: 4), adaptive: Bool = true,
                preferences: CostPreferences = CostPreferences(), proactive: Bool = false,
                wattsPerCore: Double = EnergyMeter.defaultWattsPerCore, maxRunAhead: Int = 32) {
        self.budget = budget
        self.adaptive = adaptive
        self.preferences = preferences
        self.proactive = proactive
        self.wattsPerCore = wattsPerCore
        self.maxRunAhead = maxRunAhead
    }

    enum CodingKeys: String, CodingKey { case budget, adaptive, preferences, proactive, wattsPerCore, maxRunAhead, minDraftNodes, explorationShare, deepening }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(budget: try c.decode(DraftBudget.self, forKey: .budget), adaptive: try c.decode(Bool.self, forKey: .adaptive),
                  preferences: try c.decode(CostPreferences.self, forKey: .preferences), proactive: try c.decode(Bool.self, forKey: .proactive),
                  wattsPerCore: try c.decode(Double.self, forKey: .wattsPerCore),
                  maxRunAhead: try c.decodeIfPresent(Int.self, forKey: .maxRunAhead) ?? 32)
        minDraftNodes = try c.decodeIfPresent(Int.self, forKey: .minDraftNodes) ?? 0
        explorationShare = try c.decodeIfPresent(Double.self, forKey: .explorationShare) ?? 0.01
        deepening = try c.decodeIfPresent(Bool.self, forKey: .deepening) ?? false
    }
}
