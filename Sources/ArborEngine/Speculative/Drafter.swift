/// How large a tree a drafter may propose this round.
public struct DraftBudget: Sendable, Equatable, Hashable, Codable {
    /// Most nodes in the tree.
    public var maxNodes: Int
    /// Deepest node (roots are depth 1).
    public var maxDepth: Int
    /// Most children of any one node (including the roots under the context).
    public var maxWidth: Int

    public init(maxNodes: Int, maxDepth: Int, maxWidth: Int) {
        self.maxNodes = max(0, maxNodes)
        self.maxDepth = max(0, maxDepth)
        self.maxWidth = max(1, maxWidth)
    }

    /// Drafting past a planned depth only while the path stays likely (set by the round policy
    /// for drafters that support it, `Drafter.deepens`); nil: draft to `maxDepth` in full.
    public var deepening: DraftDeepening?

    /// The depth the policy planned: `maxDepth` unless the draft may deepen past it.
    public var plannedDepth: Int { deepening.map { min($0.plannedDepth, maxDepth) } ?? maxDepth }

    /// A single chain of `depth` tokens.
    public static func chain(_ depth: Int) -> DraftBudget { DraftBudget(maxNodes: depth, maxDepth: depth, maxWidth: 1) }

    /// No drafting (plain decoding this round).
    public static let none = DraftBudget(maxNodes: 0, maxDepth: 0, maxWidth: 1)
}

/// Dynamic draft length: a drafter drafts `plannedDepth` levels in full and then keeps going,
/// up to the budget's `maxDepth`, only from nodes whose path probability — the product of the
/// calibrated acceptance probabilities of its confidences and its ancestors' — is at least
/// `minPathProbability`. The round policy sets the bar where one more drafted level is
/// predicted to pay under the user's objective (`RoundPolicy.plan`): rounds whose draft is sure
/// of itself go deeper than the average round, which the planned depth is sized for.
public struct DraftDeepening: Sendable, Equatable, Hashable, Codable {
    /// Levels drafted whatever the confidences.
    public var plannedDepth: Int
    /// The path probability a node needs for its children to be drafted past `plannedDepth`.
    public var minPathProbability: Double
    /// Acceptance probability of a node by decile of the drafter's confidence (the policy's
    /// calibration; 10 values).
    public var calibration: [Double]

    public init(plannedDepth: Int, minPathProbability: Double, calibration: [Double]) {
        self.plannedDepth = plannedDepth
        self.minPathProbability = minPathProbability
        self.calibration = calibration
    }

    /// The calibrated acceptance probability of a node of draft confidence `confidence`.
    public func probability(_ confidence: Float) -> Double {
        guard !calibration.isEmpty else { return Double(confidence) }
        let x = Double(min(max(confidence, 0), 1))
        return calibration[min(Int(x * Double(calibration.count)), calibration.count - 1)]
    }

    /// Whether a node at `depth` with path probability `pathProbability` is expanded.
    public func expands(depth: Int, pathProbability: Double) -> Bool {
        depth < plannedDepth || pathProbability >= minPathProbability
    }
}

/// Proposes token trees that continue a context.
///
/// A drafter is owned by one generation at a time. It sees the committed sequence each round and
/// proposes a tree within the budget; it never sees the target's logits, so anything it proposes
/// is verified before it becomes output (losslessness does not depend on the drafter).
///
/// Each node's `confidence` should estimate the probability that the target accepts it given its
/// parent was accepted; the controller calibrates these against measured acceptance, so a rough
/// but monotone score is enough. Nodes drawn at random must carry the distribution they were drawn
/// from (`TokenTree.proposals`); deterministic proposals carry none.
public protocol Drafter: AnyObject {
    /// Short name for telemetry (`ngram`, `suffix`, `model:<file>`).
    var name: String { get }
    /// Whether drafting costs real time per depth step (a model), so the controller must weigh it.
    var costsTimePerStep: Bool { get }
    /// Whether it honours `DraftBudget.deepening` (drafts past the planned depth only while the
    /// path stays likely); a drafter that does not would draft every allowed level in full.
    var deepens: Bool { get }
    /// A new request begins with `prompt`; `sampling` is the target's sampling configuration
    /// (a model drafter samples its own proposals with it when it is not greedy).
    func begin(prompt: [Int32], sampling: SamplingParameters) throws
    /// Proposes a tree whose roots continue `context` (the prompt and all committed output; its
    /// last token is the newest), with what it cost the drafter (its forward passes, and the time
    /// spent catching up with committed tokens it had not seen, which the policy prices apart
    /// from drafting proper). An empty tree means "nothing to propose". Wall time, CPU time and
    /// energy are filled in by `measuredDraft`.
    func draft(context: [Int32], budget: DraftBudget) throws -> Draft
    /// Reads committed tokens it has not seen, without drafting (called while the target works,
    /// so that a later draft does not start with a long catch-up). A no-op for free drafters.
    func catchUp(context: [Int32]) throws
    /// The request ended; `context` is the final committed sequence, the first `promptCount`
    /// tokens of which were the prompt. Drafters that learn across requests keep it.
    func end(context: [Int32], promptCount: Int)
}

extension Drafter {
    public var costsTimePerStep: Bool { false }
    public var deepens: Bool { false }
    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {}
    public func end(context: [Int32], promptCount: Int) {}
    public func catchUp(context: [Int32]) throws {}
}

extension Drafter {
    /// `draft`, with its wall time, process CPU time and energy measured around the call.
    public func measuredDraft(context: [Int32], budget: DraftBudget, meter: EnergyMeter) throws -> Draft {
        let start = MonotonicClock.now
        let reading = meter.read()
        var draft = try self.draft(context: context, budget: budget)
        let (cpu, joules) = meter.since(reading)
        draft.cost.milliseconds = MonotonicClock.millisecondsSince(start)
        draft.cost.cpuMilliseconds = cpu
        draft.cost.joules = joules
        draft.cost.energySource = meter.source
        return draft
    }

    /// `catchUp`, with its wall time, process CPU time and energy measured around the call.
    public func measuredCatchUp(context: [Int32], meter: EnergyMeter) throws -> DraftCost {
        var cost = try Self.measured(meter) { try catchUp(context: context) }
        cost.catchUpMilliseconds = cost.milliseconds
        return cost
    }

    /// `begin`, with its wall time, process CPU time and energy measured around the call.
    public func measuredBegin(prompt: [Int32], sampling: SamplingParameters, meter: EnergyMeter) throws -> DraftCost {
        try Self.measured(meter) { try begin(prompt: prompt, sampling: sampling) }
    }

    /// The wall time, process CPU time and energy of `work`.
    private static func measured(_ meter: EnergyMeter, _ work: () throws -> Void) throws -> DraftCost {
        let start = MonotonicClock.now
        let reading = meter.read()
        try work()
        let (cpu, joules) = meter.since(reading)
        var cost = DraftCost(milliseconds: MonotonicClock.millisecondsSince(start), cpuMilliseconds: cpu, joules: joules)
        cost.energySource = meter.source
        return cost
    }
}
