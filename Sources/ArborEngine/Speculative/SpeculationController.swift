/// Limits and policy of speculative generation.
public struct SpeculationConfiguration: Sendable, Equatable, Codable {
    /// Largest tree the drafter may propose in one round.
    public var budget: DraftBudget
    /// Choose each round's tree size from measured costs and acceptance (including not drafting
    /// at all). When false every round drafts and sends the full budget.
    public var adaptive: Bool

    public init(budget: DraftBudget = DraftBudget(maxNodes: 16, maxDepth: 8, maxWidth: 4), adaptive: Bool = true) {
        self.budget = budget
        self.adaptive = adaptive
    }
}

/// Chooses each round's tree from measured profiles, to maximise expected tokens per second.
///
/// The model of a round: drafting a tree of depth d costs `draftStep · d` (zero for free
/// drafters); scoring B tokens costs `T(B)`, measured per batch size online; node i is accepted
/// with probability `P(i)` = the product of its and its ancestors' calibrated confidences. A
/// round emits `1 + Σ P(i)` tokens in expectation (each node is on the accepted path with
/// probability P(i), plus the target's own token). The controller
/// 1. before drafting (model drafters only), picks the depth with the best expected rate using
///    acceptance-by-depth so far — depth 0 means "decode plainly this round";
/// 2. after drafting, keeps the N most probable nodes (a set closed under parents, since P
///    never grows along a path) for the N that maximises `(1 + Σ P) / (draft + T(1 + N))`.
///    N = 0 is always a candidate, so a round never costs more than plain decoding by the
///    model's own estimate.
/// Confidences are calibrated per drafter: a histogram over confidence bins of how often nodes
/// were accepted when offered (their parent accepted), starting from the drafter's own value.
public final class SpeculationController {
    public let configuration: SpeculationConfiguration
    let drafterCostsTime: Bool

    /// `targetMs[b]`: smoothed time the target computes to score b tokens; 0 until measured.
    private(set) var targetMs: [Double]
    /// Smoothed cost of a round beyond the target's computation — the network round trip and
    /// the server's queue for a remote target, 0 locally. A fixed cost per round: the higher it
    /// is, the more tokens a round must carry to pay for itself.
    private(set) var overheadMs = 0.0
    /// Smoothed draft cost per depth step (model drafters).
    private(set) var draftStepMs = 0.0
    /// Calibration bins: accepted and offered counts per confidence decile.
    private var binAccepted = [Double](repeating: 0, count: 10)
    private var binOffered = [Double](repeating: 0, count: 10)
    /// Per depth: smoothed probability that depth d is accepted given depth d-1 was.
    private var depthAcceptance: [Double]
    /// Rounds since the last drafted round, and how many to wait before re-probing when drafting
    /// looks unprofitable. The wait doubles after each probe that does not bring drafting back
    /// (a probe of a model drafter pays for catching up with every skipped token).
    private var roundsWithoutDraft = 0
    private var probeInterval = 16
    /// This round's budget is a probe: `select` sends what was drafted for it.
    private var probing = false

    private static let smoothing = 0.2
    private static let priorWeight = 2.0

    public init(configuration: SpeculationConfiguration, drafterCostsTime: Bool) {
        self.configuration = configuration
        self.drafterCostsTime = drafterCostsTime
        targetMs = [Double](repeating: 0, count: configuration.budget.maxNodes + 2)
        depthAcceptance = [Double](repeating: 0.6, count: max(configuration.budget.maxDepth, 1))
    }

    /// Estimated time to score `b` tokens: measured where known, else interpolated between
    /// measured sizes, else extrapolated (a prior slope of 15 % of one token per extra token).
    func estimatedTargetMs(_ b: Int) -> Double {
        if b < targetMs.count, targetMs[b] > 0 { return targetMs[b] }
        let known = targetMs.indices.filter { targetMs[$0] > 0 }
        guard let first = known.first else { return Double(b) }  // Nothing measured: only ratios matter.
        let lower = known.last { $0 < b }, upper = known.first { $0 > b }
        switch (lower, upper) {
        case let (l?, u?):
            return targetMs[l] + (targetMs[u] - targetMs[l]) * Double(b - l) / Double(u - l)
        case let (l?, nil):
            let prev = known.last { $0 < l }
            let slope = prev.map { (targetMs[l] - targetMs[$0]) / Double(l - $0) } ?? 0.15 * targetMs[first] / Double(first)
            return targetMs[l] + max(slope, 0.05 * targetMs[first] / Double(first)) * Double(b - l)
        case let (nil, u?):
            return targetMs[u] * Double(b) / Double(u)
        default:
            return Double(b)
        }
    }

    /// Estimated wall time of a round that scores `b` tokens.
    func estimatedRoundMs(_ b: Int) -> Double { estimatedTargetMs(b) + overheadMs }

    /// Calibrated probability that a node of drafter confidence `c` is accepted when offered.
    func calibrated(_ c: Float) -> Double {
        let x = Double(min(max(c, 0), 1))
        let bin = min(Int(x * 10), 9)
        return (binAccepted[bin] + Self.priorWeight * x) / (binOffered[bin] + Self.priorWeight)
    }

    /// The budget to draft with this round; `remaining` is how many tokens may still be emitted.
    public func budget(remaining: Int, room: Int) -> DraftBudget {
        var b = configuration.budget
        // A round always emits the target's own token, so at most remaining - 1 drafted tokens count.
        let cap = max(0, min(remaining - 1, room))
        b.maxDepth = min(b.maxDepth, cap)
        b.maxNodes = min(b.maxNodes, cap == 0 ? 0 : b.maxNodes, room)
        if b.maxDepth == 0 || b.maxNodes == 0 { return .none }
        guard configuration.adaptive, drafterCostsTime else { return b }
        // Pick the depth with the best expected rate for a model drafter.
        var best = 0
        var bestRate = 1 / estimatedRoundMs(1)
        var expected = 1.0, reach = 1.0
        for d in 1...b.maxDepth {
            reach *= depthAcceptance[min(d - 1, depthAcceptance.count - 1)]
            expected += reach
            let nodes = min(b.maxNodes, d * b.maxWidth)
            let rate = expected / (Double(d) * draftStepMs + estimatedRoundMs(1 + nodes))
            if rate > bestRate { bestRate = rate; best = d }
        }
        // Re-probe now and then so a pessimistic estimate can correct itself (bounded cost).
        if best == 0 {
            roundsWithoutDraft += 1
            if roundsWithoutDraft >= probeInterval {
                roundsWithoutDraft = 0
                probeInterval = min(probeInterval * 2, 1024)
                // Probe a few levels deep: a depth-1 probe could never show that deeper drafts pay.
                best = min(3, b.maxDepth)
                probing = true
            }
        } else {
            probeInterval = 16
        }
        if best == 0 { return .none }
        b.maxDepth = best
        b.maxNodes = min(b.maxNodes, best * b.maxWidth)
        return b
    }

    /// Keeps the part of `tree` worth scoring (the whole tree when not adaptive).
    public func select(_ tree: TokenTree, draftMilliseconds: Double) -> TokenTree {
        guard configuration.adaptive, !tree.isEmpty else {
            probing = false
            return tree
        }
        var pathP = [Double](repeating: 0, count: tree.count)
        for i in 0..<tree.count {
            let parent = tree.parents[i]
            pathP[i] = (parent < 0 ? 1 : pathP[parent]) * calibrated(tree.confidences[i])
        }
        // Most probable first; equal values keep index order so parents precede children.
        let order = tree.tokens.indices.sorted { pathP[$0] != pathP[$1] ? pathP[$0] > pathP[$1] : $0 < $1 }
        let sunk = drafterCostsTime ? draftMilliseconds : 0
        var bestN = 0
        var bestRate = 1 / (sunk + estimatedRoundMs(1))
        var expected = 1.0
        for (k, i) in order.enumerated() {
            expected += pathP[i]
            let rate = expected / (sunk + estimatedRoundMs(k + 2))
            if rate > bestRate { bestRate = rate; bestN = k + 1 }
        }
        if probing {
            // A probe drafted for a reason: score its most probable nodes, whatever the estimate.
            probing = false
            bestN = max(bestN, min(order.count, 3))
        }
        if bestN == 0 {
            roundsWithoutDraft += 1
            // Re-probe with the single most probable node now and then.
            guard roundsWithoutDraft >= probeInterval else { return TokenTree() }
            roundsWithoutDraft = 0
            probeInterval = min(probeInterval * 2, 1024)
            bestN = 1
        } else {
            roundsWithoutDraft = 0
            if !drafterCostsTime { probeInterval = 16 }
        }
        return tree.subtree(keeping: Set(order.prefix(bestN))).tree
    }

    /// Learns from a finished round.
    public func observe(tree: TokenTree, result: VerificationResult, draftMilliseconds: Double, draftDepth: Int, catchUpMilliseconds: Double = 0) {
        // Compute per batch size and the fixed per-round overhead are learned apart, so that
        // extrapolating to unmeasured batch sizes scales the compute only.
        let b = result.batchSize
        if b < targetMs.count {
            targetMs[b] = targetMs[b] == 0 ? result.targetMilliseconds : (1 - Self.smoothing) * targetMs[b] + Self.smoothing * result.targetMilliseconds
        }
        if result.roundMilliseconds > 0 {
            let overhead = max(0, result.roundMilliseconds - result.targetMilliseconds - result.samplingMilliseconds)
            overheadMs = overheadMs == 0 ? overhead : (1 - Self.smoothing) * overheadMs + Self.smoothing * overhead
        }
        if drafterCostsTime, draftDepth > 0 {
            let step = max(0, draftMilliseconds - catchUpMilliseconds) / Double(draftDepth)
            draftStepMs = draftStepMs == 0 ? step : (1 - Self.smoothing) * draftStepMs + Self.smoothing * step
        }
        guard !tree.isEmpty else { return }
        var onPath = Set(result.acceptedNodes)
        onPath.insert(-1)
        let accepted = Set(result.acceptedNodes)
        for i in 0..<tree.count where onPath.contains(tree.parents[i]) {
            let bin = min(Int(Double(min(max(tree.confidences[i], 0), 1)) * 10), 9)
            binOffered[bin] += 1
            if accepted.contains(i) { binAccepted[bin] += 1 }
        }
        // Depth acceptance: depth d offered when the path reached d-1 and the tree went deeper.
        for d in 1...min(tree.maxDepth, depthAcceptance.count) {
            guard result.acceptedNodes.count >= d - 1 else { break }
            let hit = result.acceptedNodes.count >= d ? 1.0 : 0.0
            depthAcceptance[d - 1] = (1 - Self.smoothing) * depthAcceptance[d - 1] + Self.smoothing * hit
        }
    }
}
