/// Telemetry of one speculative generation: counters and derived rates.
public struct SpeculativeStats: Codable, Sendable, Equatable {
    /// The drafter's name (`none` for plain decoding through the speculative loop).
    public var drafter: String
    /// Verification rounds (target forward passes after the prompt).
    public var rounds = 0
    /// Rounds that scored no draft at all (the controller chose plain decoding, or the drafter had
    /// nothing to propose).
    public var plainRounds = 0
    /// Exchanges in which the target decoded several tokens by itself (run-ahead rounds), and
    /// the tokens it decoded in them. Each of their target passes also counts as a plain round.
    public var runAheadRounds = 0
    public var runAheadTokens = 0
    /// Rounds whose draft went past the planned depth (`DraftDeepening`: its path stayed likely).
    public var deepenedRounds = 0
    /// Drafted nodes sent to the target, over all rounds.
    public var draftedNodes = 0
    /// Drafted nodes the target accepted.
    public var acceptedNodes = 0
    /// `offeredByDepth[d-1]`: rounds in which the tree had a node at depth d whose parent was
    /// accepted (so the target could accept depth d). `acceptedByDepth[d-1]`: rounds in which it did.
    public var offeredByDepth: [Int] = []
    public var acceptedByDepth: [Int] = []
    /// `verifyBatchSizes[b]`: rounds whose target pass scored b tokens (pending token + tree).
    public var verifyBatchSizes: [Int] = []
    /// Time drafting, in the target's forward passes, and turning logits into verdicts.
    public var draftMilliseconds = 0.0
    public var verifyMilliseconds = 0.0
    /// Draft forward passes (model drafters), for the draft's cost per step.
    public var draftSteps = 0
    public var samplingMilliseconds = 0.0
    /// Wall time of all rounds (drafting, verifying, bookkeeping, streaming text).
    public var totalMilliseconds = 0.0
    /// Tokens emitted (accepted nodes plus each round's own token, cut at the stop).
    public var emittedTokens = 0

    /// Network costs when the target was remote.
    public var remote: TransportStats?
    /// The objective, predicted against measured speed and cost, and each cost component.
    public var cost: CostReport?
    /// Proactive drafting: trees drafted ahead, used and wasted.
    public var proactive = ProactiveStats()
    /// The first rounds' plans and outcomes (at most `RoundSummary.kept`).
    public var plans: [RoundSummary] = []

    public init(drafter: String) { self.drafter = drafter }

    /// Accepted ÷ drafted nodes.
    public var acceptanceRate: Double { draftedNodes > 0 ? Double(acceptedNodes) / Double(draftedNodes) : 0 }
    /// Tokens committed per round (accepted nodes + the target's own token).
    public var meanAcceptedLength: Double { rounds > 0 ? Double(acceptedNodes + rounds) / Double(rounds) : 0 }
    /// Per depth: accepted ÷ offered.
    public var acceptanceByDepth: [Double] {
        zip(acceptedByDepth, offeredByDepth).map { $1 > 0 ? Double($0) / Double($1) : 0 }
    }
    /// Drafting time per draft forward pass (0 for free drafters).
    public var draftMillisecondsPerStep: Double { draftSteps > 0 ? draftMilliseconds / Double(draftSteps) : 0 }
    /// Emitted tokens per second of round time.
    public var tokensPerSecond: Double { totalMilliseconds > 0 ? Double(emittedTokens) / (totalMilliseconds / 1000) : 0 }
    /// Mean tokens per target pass.
    public var meanVerifyBatchSize: Double {
        let total = verifyBatchSizes.enumerated().reduce(0) { $0 + $1.offset * $1.element }
        return rounds > 0 ? Double(total) / Double(rounds) : 0
    }

    /// Records one round.
    mutating func record(_ round: RoundRecord) {
        let tree = round.sent, result = round.result
        let draftMilliseconds = round.draftedAhead ? 0 : round.draft.cost.milliseconds
        if plans.count < RoundSummary.kept { plans.append(RoundSummary(round)) }
        // Counted per target pass: a run-ahead round is that many plain rounds in one exchange.
        rounds += result.passes
        if tree.isEmpty { plainRounds += result.passes }
        if !result.decodedTokens.isEmpty || round.prediction.runAhead > 0 {
            runAheadRounds += 1
            runAheadTokens += result.passes
        }
        draftedNodes += tree.count
        acceptedNodes += result.acceptedNodes.count
        self.draftMilliseconds += draftMilliseconds
        if !round.draftedAhead { draftSteps += round.draft.cost.steps }
        if !round.draftedAhead, round.draft.tree.maxDepth > round.plan.budget.plannedDepth { deepenedRounds += 1 }
        verifyMilliseconds += result.targetMilliseconds
        samplingMilliseconds += result.samplingMilliseconds
        if verifyBatchSizes.count <= result.batchSize {
            verifyBatchSizes += [Int](repeating: 0, count: result.batchSize + 1 - verifyBatchSizes.count)
        }
        verifyBatchSizes[result.batchSize] += result.passes
        // Depth d was offered if some node at depth d hangs off the accepted path (or the context).
        var onPath = Set(result.acceptedNodes)
        onPath.insert(-1)
        var offered = Set<Int>()
        for i in 0..<tree.count where onPath.contains(tree.parents[i]) { offered.insert(tree.depths[i]) }
        let deepest = max(offered.max() ?? 0, result.acceptedNodes.count)
        if offeredByDepth.count < deepest {
            offeredByDepth += [Int](repeating: 0, count: deepest - offeredByDepth.count)
            acceptedByDepth += [Int](repeating: 0, count: deepest - acceptedByDepth.count)
        }
        for d in offered { offeredByDepth[d - 1] += 1 }
        for d in 0..<result.acceptedNodes.count { acceptedByDepth[d] += 1 }
    }

    enum CodingKeys: String, CodingKey {
        case drafter, rounds, plainRounds = "plain_rounds", runAheadRounds = "run_ahead_rounds", runAheadTokens = "run_ahead_tokens", deepenedRounds = "deepened_rounds", draftedNodes = "drafted_nodes", acceptedNodes = "accepted_nodes"
        case offeredByDepth = "offered_by_depth", acceptedByDepth = "accepted_by_depth", verifyBatchSizes = "verify_batch_sizes"
        case draftMilliseconds = "draft_ms", verifyMilliseconds = "verify_ms", samplingMilliseconds = "sampling_ms"
        case draftSteps = "draft_steps", draftMillisecondsPerStep = "draft_ms_per_step"
        case totalMilliseconds = "total_ms", emittedTokens = "emitted_tokens"
        case acceptanceRate = "acceptance_rate", meanAcceptedLength = "mean_accepted_length"
        case acceptanceByDepth = "acceptance_by_depth", tokensPerSecond = "tokens_per_second"
        case meanVerifyBatchSize = "mean_verify_batch_size", remote, cost, proactive, plans
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        drafter = try c.decode(String.self, forKey: .drafter)
        rounds = try c.decode(Int.self, forKey: .rounds)
        plainRounds = try c.decode(Int.self, forKey: .plainRounds)
        runAheadRounds = try c.decodeIfPresent(Int.self, forKey: .runAheadRounds) ?? 0
        runAheadTokens = try c.decodeIfPresent(Int.self, forKey: .runAheadTokens) ?? 0
        deepenedRounds = try c.decodeIfPresent(Int.self, forKey: .deepenedRounds) ?? 0
        draftedNodes = try c.decode(Int.self, forKey: .draftedNodes)
        acceptedNodes = try c.decode(Int.self, forKey: .acceptedNodes)
        offeredByDepth = try c.decode([Int].self, forKey: .offeredByDepth)
        acceptedByDepth = try c.decode([Int].self, forKey: .acceptedByDepth)
        verifyBatchSizes = try c.decode([Int].self, forKey: .verifyBatchSizes)
        draftMilliseconds = try c.decode(Double.self, forKey: .draftMilliseconds)
        verifyMilliseconds = try c.decode(Double.self, forKey: .verifyMilliseconds)
        draftSteps = try c.decodeIfPresent(Int.self, forKey: .draftSteps) ?? 0
        samplingMilliseconds = try c.decode(Double.self, forKey: .samplingMilliseconds)
        totalMilliseconds = try c.decode(Double.self, forKey: .totalMilliseconds)
        emittedTokens = try c.decode(Int.self, forKey: .emittedTokens)
        remote = try c.decodeIfPresent(TransportStats.self, forKey: .remote)
        cost = try c.decodeIfPresent(CostReport.self, forKey: .cost)
        proactive = try c.decodeIfPresent(ProactiveStats.self, forKey: .proactive) ?? ProactiveStats()
        plans = try c.decodeIfPresent([RoundSummary].self, forKey: .plans) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(drafter, forKey: .drafter)
        try c.encode(rounds, forKey: .rounds)
        try c.encode(plainRounds, forKey: .plainRounds)
        try c.encode(runAheadRounds, forKey: .runAheadRounds)
        try c.encode(runAheadTokens, forKey: .runAheadTokens)
        try c.encode(deepenedRounds, forKey: .deepenedRounds)
        try c.encode(draftedNodes, forKey: .draftedNodes)
        try c.encode(acceptedNodes, forKey: .acceptedNodes)
        try c.encode(offeredByDepth, forKey: .offeredByDepth)
        try c.encode(acceptedByDepth, forKey: .acceptedByDepth)
        try c.encode(verifyBatchSizes, forKey: .verifyBatchSizes)
        try c.encode(draftMilliseconds, forKey: .draftMilliseconds)
        try c.encode(verifyMilliseconds, forKey: .verifyMilliseconds)
        try c.encode(draftSteps, forKey: .draftSteps)
        try c.encode(draftMillisecondsPerStep, forKey: .draftMillisecondsPerStep)
        try c.encode(samplingMilliseconds, forKey: .samplingMilliseconds)
        try c.encode(totalMilliseconds, forKey: .totalMilliseconds)
        try c.encode(emittedTokens, forKey: .emittedTokens)
        try c.encode(acceptanceRate, forKey: .acceptanceRate)
        try c.encode(meanAcceptedLength, forKey: .meanAcceptedLength)
        try c.encode(acceptanceByDepth, forKey: .acceptanceByDepth)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(meanVerifyBatchSize, forKey: .meanVerifyBatchSize)
        try c.encodeIfPresent(remote, forKey: .remote)
        try c.encodeIfPresent(cost, forKey: .cost)
        try c.encode(proactive, forKey: .proactive)
        try c.encode(plans, forKey: .plans)
    }

    /// Adds another generation's counters (for a prompt set's totals).
    public mutating func merge(_ o: SpeculativeStats) {
        rounds += o.rounds
        plainRounds += o.plainRounds
        runAheadRounds += o.runAheadRounds
        runAheadTokens += o.runAheadTokens
        deepenedRounds += o.deepenedRounds
        draftedNodes += o.draftedNodes
        acceptedNodes += o.acceptedNodes
        func add(_ a: inout [Int], _ b: [Int]) {
            if a.count < b.count { a += [Int](repeating: 0, count: b.count - a.count) }
            for (i, v) in b.enumerated() { a[i] += v }
        }
        add(&offeredByDepth, o.offeredByDepth)
        add(&acceptedByDepth, o.acceptedByDepth)
        add(&verifyBatchSizes, o.verifyBatchSizes)
        draftMilliseconds += o.draftMilliseconds
        draftSteps += o.draftSteps
        verifyMilliseconds += o.verifyMilliseconds
        samplingMilliseconds += o.samplingMilliseconds
        totalMilliseconds += o.totalMilliseconds
        emittedTokens += o.emittedTokens
        proactive.merge(o.proactive)
        if let oc = o.cost { cost = cost.map { $0.merged(oc) } ?? oc }
    }
}

/// Proactive drafting in one request.
public struct ProactiveStats: Codable, Sendable, Equatable {
    /// Trees drafted during the previous round's verification.
    public var started = 0
    /// Of those, used as the next round's tree (the assumed path was accepted).
    public var hits = 0
    /// Discarded (the verdict took another path).
    public var misses = 0
    /// Draft time spent on the discarded trees.
    public var wastedDraftMilliseconds = 0.0
    /// Draft time overlapped with verification and used.
    public var savedDraftMilliseconds = 0.0

    public init() {}

    public mutating func merge(_ o: ProactiveStats) {
        started += o.started
        hits += o.hits
        misses += o.misses
        wastedDraftMilliseconds += o.wastedDraftMilliseconds
        savedDraftMilliseconds += o.savedDraftMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case started, hits, misses, wastedDraftMilliseconds = "wasted_draft_ms", savedDraftMilliseconds = "saved_draft_ms"
    }
}

/// One round's plan and outcome, for telemetry (how well the first rounds were sized).
public struct RoundSummary: Codable, Sendable, Equatable {
    /// Rounds kept per request.
    public static let kept = 64
    /// The planned depth (0: plain), the depth drafted (past the planned one when the draft
    /// deepened; 0 when nothing was drafted) and the nodes sent.
    public var plannedDepth: Int
    public var draftedDepth: Int
    public var nodes: Int
    /// Predicted and committed tokens.
    public var predictedTokens: Double
    public var tokens: Int
    /// Predicted and measured round time.
    public var predictedMilliseconds: Double
    public var milliseconds: Double
    public var draftedAhead: Bool
    /// Tokens asked of the target alone (a run-ahead round), else 0.
    public var runAhead: Int

    init(_ r: RoundRecord) {
        plannedDepth = r.plan.budget.plannedDepth
        draftedDepth = r.draft.tree.maxDepth
        nodes = r.sent.count
        predictedTokens = r.prediction.tokens
        tokens = r.result.committedCount
        runAhead = r.prediction.runAhead
        predictedMilliseconds = r.prediction.milliseconds
        milliseconds = r.milliseconds
        draftedAhead = r.draftedAhead
    }

    enum CodingKeys: String, CodingKey {
        case plannedDepth = "planned_depth", draftedDepth = "drafted_depth", nodes, predictedTokens = "predicted_tokens", tokens
        case predictedMilliseconds = "predicted_ms", milliseconds = "ms", draftedAhead = "drafted_ahead", runAhead = "run_ahead"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        plannedDepth = try c.decode(Int.self, forKey: .plannedDepth)
        draftedDepth = try c.decodeIfPresent(Int.self, forKey: .draftedDepth) ?? 0
        nodes = try c.decode(Int.self, forKey: .nodes)
        predictedTokens = try c.decode(Double.self, forKey: .predictedTokens)
        tokens = try c.decode(Int.self, forKey: .tokens)
        predictedMilliseconds = try c.decode(Double.self, forKey: .predictedMilliseconds)
        milliseconds = try c.decode(Double.self, forKey: .milliseconds)
        draftedAhead = try c.decode(Bool.self, forKey: .draftedAhead)
        runAhead = try c.decodeIfPresent(Int.self, forKey: .runAhead) ?? 0
    }
}

/// A request's cost under the user's objective: measured and predicted, with every component.
public struct CostReport: Codable, Sendable, Equatable {
    public var objective: Objective
    public var cs: CostSensitivity
    public var serviceLevel: ServiceLevel?
    public var rates: CostRates
    /// Resources measured over the rounds, and predicted by the policy before each round.
    public var measured = ResourceUse()
    public var predicted = ResourceUse()
    /// Tokens committed and round time, as predicted (sums over rounds).
    public var predictedTokens = 0.0
    public var predictedMilliseconds = 0.0
    /// Tokens committed and round time, as measured.
    public var tokens = 0
    public var milliseconds = 0.0
    /// Where the energy figures come from.
    public var draftEnergySource: EnergySource
    public var targetEnergySource: EnergySource?
    /// Set when a service level was asked for and not met: what happened and the best achievable.
    public var serviceLevelNote: String?

    public init(preferences: CostPreferences, draftEnergySource: EnergySource) {
        objective = preferences.objective
        cs = preferences.cs
        serviceLevel = preferences.serviceLevel
        rates = preferences.rates
        self.draftEnergySource = draftEnergySource
    }

    mutating func add(_ r: RoundRecord) {
        measured = measured + r.use
        predicted = predicted + r.prediction.use
        predictedTokens += r.prediction.tokens
        predictedMilliseconds += r.prediction.milliseconds
        tokens += r.result.committedCount
        milliseconds += r.milliseconds
        if let s = r.result.cost.targetEnergySource { targetEnergySource = s }
    }

    /// The measured dollars by component.
    public var breakdown: CostBreakdown { CostBreakdown(measured, rates: rates) }
    /// Measured and predicted cost in the objective's unit.
    public var measuredCost: Double { objective.cost(of: measured, rates: rates) }
    public var predictedCost: Double { objective.cost(of: predicted, rates: rates) }
    public var tokensPerSecond: Double { milliseconds > 0 ? Double(tokens) / milliseconds * 1000 : 0 }
    public var predictedTokensPerSecond: Double { predictedMilliseconds > 0 ? predictedTokens / predictedMilliseconds * 1000 : 0 }
    /// Cost per million committed tokens, measured and predicted.
    public var costPerMillionTokens: Double { tokens > 0 ? measuredCost / Double(tokens) * 1e6 : 0 }
    public var predictedCostPerMillionTokens: Double { predictedTokens > 0 ? predictedCost / predictedTokens * 1e6 : 0 }
    /// `total_cost` in dollars per million tokens, whatever the objective (for comparisons).
    public var totalDollarsPerMillionTokens: Double { tokens > 0 ? breakdown.total / Double(tokens) * 1e6 : 0 }
    /// Energy of both sides per token, J.
    public var joulesPerToken: Double { tokens > 0 ? (measured.draftJoules + measured.targetJoules) / Double(tokens) : 0 }

    func merged(_ o: CostReport) -> CostReport {
        var m = self
        m.measured = measured + o.measured
        m.predicted = predicted + o.predicted
        m.predictedTokens += o.predictedTokens
        m.predictedMilliseconds += o.predictedMilliseconds
        m.tokens += o.tokens
        m.milliseconds += o.milliseconds
        m.targetEnergySource = targetEnergySource ?? o.targetEnergySource
        return m
    }

    enum CodingKeys: String, CodingKey {
        case objective, cs, serviceLevel = "service_level", rates, measured, predicted
        case predictedTokens = "predicted_tokens", predictedMilliseconds = "predicted_ms", tokens, milliseconds = "ms"
        case draftEnergySource = "draft_energy_source", targetEnergySource = "target_energy_source", serviceLevelNote = "service_level_note"
        case breakdown, measuredCost = "measured_cost", predictedCost = "predicted_cost", unit
        case tokensPerSecond = "tokens_per_second", predictedTokensPerSecond = "predicted_tokens_per_second"
        case costPerMillionTokens = "cost_per_million_tokens", predictedCostPerMillionTokens = "predicted_cost_per_million_tokens"
        case totalDollarsPerMillionTokens = "total_usd_per_million_tokens", joulesPerToken = "joules_per_token"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        objective = try c.decode(Objective.self, forKey: .objective)
        cs = try c.decode(CostSensitivity.self, forKey: .cs)
        serviceLevel = try c.decodeIfPresent(ServiceLevel.self, forKey: .serviceLevel)
        rates = try c.decode(CostRates.self, forKey: .rates)
        measured = try c.decode(ResourceUse.self, forKey: .measured)
        predicted = try c.decode(ResourceUse.self, forKey: .predicted)
        predictedTokens = try c.decode(Double.self, forKey: .predictedTokens)
        predictedMilliseconds = try c.decode(Double.self, forKey: .predictedMilliseconds)
        tokens = try c.decode(Int.self, forKey: .tokens)
        milliseconds = try c.decode(Double.self, forKey: .milliseconds)
        draftEnergySource = try c.decode(EnergySource.self, forKey: .draftEnergySource)
        targetEnergySource = try c.decodeIfPresent(EnergySource.self, forKey: .targetEnergySource)
        serviceLevelNote = try c.decodeIfPresent(String.self, forKey: .serviceLevelNote)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(objective, forKey: .objective)
        try c.encode(cs, forKey: .cs)
        try c.encodeIfPresent(serviceLevel, forKey: .serviceLevel)
        try c.encode(rates, forKey: .rates)
        try c.encode(measured, forKey: .measured)
        try c.encode(predicted, forKey: .predicted)
        try c.encode(predictedTokens, forKey: .predictedTokens)
        try c.encode(predictedMilliseconds, forKey: .predictedMilliseconds)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(milliseconds, forKey: .milliseconds)
        try c.encode(draftEnergySource, forKey: .draftEnergySource)
        try c.encodeIfPresent(targetEnergySource, forKey: .targetEnergySource)
        try c.encodeIfPresent(serviceLevelNote, forKey: .serviceLevelNote)
        try c.encode(breakdown, forKey: .breakdown)
        try c.encode(measuredCost, forKey: .measuredCost)
        try c.encode(predictedCost, forKey: .predictedCost)
        try c.encode(objective.unit, forKey: .unit)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(predictedTokensPerSecond, forKey: .predictedTokensPerSecond)
        try c.encode(costPerMillionTokens, forKey: .costPerMillionTokens)
        try c.encode(predictedCostPerMillionTokens, forKey: .predictedCostPerMillionTokens)
        try c.encode(totalDollarsPerMillionTokens, forKey: .totalDollarsPerMillionTokens)
        try c.encode(joulesPerToken, forKey: .joulesPerToken)
    }
}
