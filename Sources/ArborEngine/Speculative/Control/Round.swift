/// The values that flow through one speculative round, in order:
///
///     RoundPolicy.plan ──RoundPlan──▶ Drafter.draft ──Draft──▶ RoundPolicy.select ──Selection──▶
///     Verifier.verify ──VerificationResult (with RoundCost)──▶ RoundRecord ──▶ policy + statistics

/// What the policy decided before drafting: how large a tree to draft, or to decode plainly, or
/// to let the target run ahead by itself.
public struct RoundPlan: Sendable, Equatable {
    /// The tree the drafter may propose (`.none`: nothing drafted).
    public var budget: DraftBudget
    /// The round is a probe: drafting looked unprofitable for a while, so a small tree is tried
    /// to keep the estimates honest (bounded cost: the probe interval doubles).
    public var isProbe: Bool
    /// ≥ 2: nothing is drafted and the target decodes this many tokens by itself in one exchange
    /// (`RunAheadVerifier`); 0 otherwise.
    public var runAhead: Int

    public init(budget: DraftBudget, isProbe: Bool = false, runAhead: Int = 0) {
        self.budget = budget
        self.isProbe = isProbe
        self.runAhead = runAhead
    }

    /// One target token, nothing drafted.
    public static let plain = RoundPlan(budget: .none)
    /// `count` tokens decoded by the target alone.
    public static func runAhead(_ count: Int) -> RoundPlan { RoundPlan(budget: .none, runAhead: count) }
    /// Nothing is drafted (a plain or run-ahead round).
    public var isPlain: Bool { budget == .none }
}

/// What drafting one tree cost on this device.
public struct DraftCost: Sendable, Equatable, Codable {
    /// Wall time of the call.
    public var milliseconds = 0.0
    /// Of that, time feeding committed tokens the drafter had not seen (a model drafter after
    /// plain rounds): priced apart, since it is not per depth step.
    public var catchUpMilliseconds = 0.0
    /// Process CPU time of the call (all threads).
    public var cpuMilliseconds = 0.0
    /// Energy of the call, and whether it was measured (RAPL) or modelled (CPU time × W/core).
    public var joules = 0.0
    public var energySource: EnergySource?
    /// Draft forward passes (model drafters; 0 for free drafters).
    public var steps = 0

    public init(milliseconds: Double = 0, catchUpMilliseconds: Double = 0, cpuMilliseconds: Double = 0, joules: Double = 0, steps: Int = 0) {
        self.milliseconds = milliseconds
        self.catchUpMilliseconds = catchUpMilliseconds
        self.cpuMilliseconds = cpuMilliseconds
        self.joules = joules
        self.steps = steps
    }
}

/// A drafter's proposal and what it cost.
public struct Draft: Sendable, Equatable {
    public var tree: TokenTree
    public var cost: DraftCost

    public init(tree: TokenTree = TokenTree(), cost: DraftCost = DraftCost()) {
        self.tree = tree
        self.cost = cost
    }
}

/// What verifying one tree cost, as measured by the verifier (and, for a remote target, as the
/// server reported it).
public struct RoundCost: Sendable, Equatable, Codable {
    /// Target compute for the pass where it ran (the server's, for a remote target).
    public var targetMilliseconds = 0.0
    /// Turning logits into the verdict (distributions, acceptance tests, the draw).
    public var samplingMilliseconds = 0.0
    /// CPU time of the target's work (all its threads), when known.
    public var targetCPUMilliseconds = 0.0
    /// Energy of the target's work, and whether the server measured or modelled it (nil: the
    /// server did not say; the policy models it from the compute time).
    public var targetJoules = 0.0
    public var targetEnergySource: EnergySource?
    /// The whole exchange as the caller waited for it (for a remote target the round trip,
    /// including the network and the server's queue); 0 when it is just the local computation.
    public var roundTripMilliseconds = 0.0
    /// Time the round waited on the server behind other sessions.
    public var queueMilliseconds = 0.0
    /// Application bytes of the round (verify frame up, result frame down); 0 locally.
    public var bytesUp = 0
    public var bytesDown = 0

    public init() {}

    /// The server's part of the round: compute and sampling.
    public var serverMilliseconds: Double { targetMilliseconds + samplingMilliseconds }
}

/// What the policy expects a round to yield, for the plan it chose (predicted before sending).
public struct RoundPrediction: Sendable, Equatable, Codable {
    /// Nodes to send.
    public var nodes = 0
    /// Expected tokens committed (accepted nodes + the target's own).
    public var tokens = 1.0
    /// Expected wall time of the round: draft + round overhead + per-node network + target.
    public var milliseconds = 0.0
    /// Expected resources (target time and energy, draft energy, bytes).
    public var use = ResourceUse()
    /// Cost in the objective's unit.
    public var cost = 0.0
    /// ≥ 2 for a run-ahead round (tokens the target decodes by itself), else 0.
    public var runAhead = 0

    public init(nodes: Int = 0, tokens: Double = 1, milliseconds: Double = 0, use: ResourceUse = ResourceUse(), cost: Double = 0, runAhead: Int = 0) {
        self.runAhead = runAhead
        self.nodes = nodes
        self.tokens = tokens
        self.milliseconds = milliseconds
        self.use = use
        self.cost = cost
    }

    public var tokensPerSecond: Double { milliseconds > 0 ? tokens / milliseconds * 1000 : 0 }
    public var costPerToken: Double { tokens > 0 ? cost / tokens : 0 }
}

/// The policy's choice after drafting: the part of the draft worth sending, with its prediction.
public struct Selection: Sendable, Equatable {
    public var tree: TokenTree
    public var prediction: RoundPrediction
}

/// Everything one round did and cost: the one record that feeds the policy (to learn) and the
/// statistics (to report).
public struct RoundRecord: Sendable {
    public var plan: RoundPlan
    /// The drafted tree (before selection) and its cost.
    public var draft: Draft
    /// The tree sent to the target.
    public var sent: TokenTree
    public var prediction: RoundPrediction
    public var result: VerificationResult
    /// The round's measured resources.
    public var use: ResourceUse
    /// Wall time of the round on this side, drafting included.
    public var milliseconds: Double
    /// Whether this round's tree was drafted ahead, during the previous round's verification.
    public var draftedAhead: Bool
    /// A tree drafted ahead during this round's verification: whether the verdict let the next
    /// round use it (nil: none was drafted ahead).
    public var aheadOutcome: Bool?
    /// Committed tokens the drafter had not read when this round began (after rounds that drafted
    /// nothing); its catch-up cost is learned per such token.
    public var drafterLag = 0

    public init(plan: RoundPlan, draft: Draft, sent: TokenTree, prediction: RoundPrediction, result: VerificationResult,
                use: ResourceUse, milliseconds: Double, draftedAhead: Bool = false, aheadOutcome: Bool? = nil) {
        self.aheadOutcome = aheadOutcome
        self.plan = plan
        self.draft = draft
        self.sent = sent
        self.prediction = prediction
        self.result = result
        self.use = use
        self.milliseconds = milliseconds
        self.draftedAhead = draftedAhead
    }
}
