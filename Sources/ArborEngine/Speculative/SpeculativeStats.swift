/// Telemetry of one speculative generation: counters and derived rates.
public struct SpeculativeStats: Codable, Sendable, Equatable {
    /// The drafter's name (`none` for plain decoding through the speculative loop).
    public var drafter: String
    /// Verification rounds (target forward passes after the prompt).
    public var rounds = 0
    /// Rounds that scored no draft at all (the controller chose plain decoding, or the drafter had
    /// nothing to propose).
    public var plainRounds = 0
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
    public var samplingMilliseconds = 0.0
    /// Wall time of all rounds (drafting, verifying, bookkeeping, streaming text).
    public var totalMilliseconds = 0.0
    /// Tokens emitted (accepted nodes plus each round's own token, cut at the stop).
    public var emittedTokens = 0

    /// Network costs when the target was remote.
    public var remote: TransportStats?

    public init(drafter: String) { self.drafter = drafter }

    /// Accepted ÷ drafted nodes.
    public var acceptanceRate: Double { draftedNodes > 0 ? Double(acceptedNodes) / Double(draftedNodes) : 0 }
    /// Tokens committed per round (accepted nodes + the target's own token).
    public var meanAcceptedLength: Double { rounds > 0 ? Double(acceptedNodes + rounds) / Double(rounds) : 0 }
    /// Per depth: accepted ÷ offered.
    public var acceptanceByDepth: [Double] {
        zip(acceptedByDepth, offeredByDepth).map { $1 > 0 ? Double($0) / Double($1) : 0 }
    }
    /// Emitted tokens per second of round time.
    public var tokensPerSecond: Double { totalMilliseconds > 0 ? Double(emittedTokens) / (totalMilliseconds / 1000) : 0 }
    /// Mean tokens per target pass.
    public var meanVerifyBatchSize: Double {
        let total = verifyBatchSizes.enumerated().reduce(0) { $0 + $1.offset * $1.element }
        return rounds > 0 ? Double(total) / Double(rounds) : 0
    }

    /// Records one round.
    mutating func record(tree: TokenTree, result: VerificationResult, draftMilliseconds: Double) {
        rounds += 1
        if tree.isEmpty { plainRounds += 1 }
        draftedNodes += tree.count
        acceptedNodes += result.acceptedNodes.count
        self.draftMilliseconds += draftMilliseconds
        verifyMilliseconds += result.targetMilliseconds
        samplingMilliseconds += result.samplingMilliseconds
        if verifyBatchSizes.count <= result.batchSize {
            verifyBatchSizes += [Int](repeating: 0, count: result.batchSize + 1 - verifyBatchSizes.count)
        }
        verifyBatchSizes[result.batchSize] += 1
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
        case drafter, rounds, plainRounds = "plain_rounds", draftedNodes = "drafted_nodes", acceptedNodes = "accepted_nodes"
        case offeredByDepth = "offered_by_depth", acceptedByDepth = "accepted_by_depth", verifyBatchSizes = "verify_batch_sizes"
        case draftMilliseconds = "draft_ms", verifyMilliseconds = "verify_ms", samplingMilliseconds = "sampling_ms"
        case totalMilliseconds = "total_ms", emittedTokens = "emitted_tokens"
        case acceptanceRate = "acceptance_rate", meanAcceptedLength = "mean_accepted_length"
        case acceptanceByDepth = "acceptance_by_depth", tokensPerSecond = "tokens_per_second"
        case meanVerifyBatchSize = "mean_verify_batch_size", remote
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        drafter = try c.decode(String.self, forKey: .drafter)
        rounds = try c.decode(Int.self, forKey: .rounds)
        plainRounds = try c.decode(Int.self, forKey: .plainRounds)
        draftedNodes = try c.decode(Int.self, forKey: .draftedNodes)
        acceptedNodes = try c.decode(Int.self, forKey: .acceptedNodes)
        offeredByDepth = try c.decode([Int].self, forKey: .offeredByDepth)
        acceptedByDepth = try c.decode([Int].self, forKey: .acceptedByDepth)
        verifyBatchSizes = try c.decode([Int].self, forKey: .verifyBatchSizes)
        draftMilliseconds = try c.decode(Double.self, forKey: .draftMilliseconds)
        verifyMilliseconds = try c.decode(Double.self, forKey: .verifyMilliseconds)
        samplingMilliseconds = try c.decode(Double.self, forKey: .samplingMilliseconds)
        totalMilliseconds = try c.decode(Double.self, forKey: .totalMilliseconds)
        emittedTokens = try c.decode(Int.self, forKey: .emittedTokens)
        remote = try c.decodeIfPresent(TransportStats.self, forKey: .remote)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(drafter, forKey: .drafter)
        try c.encode(rounds, forKey: .rounds)
        try c.encode(plainRounds, forKey: .plainRounds)
        try c.encode(draftedNodes, forKey: .draftedNodes)
        try c.encode(acceptedNodes, forKey: .acceptedNodes)
        try c.encode(offeredByDepth, forKey: .offeredByDepth)
        try c.encode(acceptedByDepth, forKey: .acceptedByDepth)
        try c.encode(verifyBatchSizes, forKey: .verifyBatchSizes)
        try c.encode(draftMilliseconds, forKey: .draftMilliseconds)
        try c.encode(verifyMilliseconds, forKey: .verifyMilliseconds)
        try c.encode(samplingMilliseconds, forKey: .samplingMilliseconds)
        try c.encode(totalMilliseconds, forKey: .totalMilliseconds)
        try c.encode(emittedTokens, forKey: .emittedTokens)
        try c.encode(acceptanceRate, forKey: .acceptanceRate)
        try c.encode(meanAcceptedLength, forKey: .meanAcceptedLength)
        try c.encode(acceptanceByDepth, forKey: .acceptanceByDepth)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(meanVerifyBatchSize, forKey: .meanVerifyBatchSize)
        try c.encodeIfPresent(remote, forKey: .remote)
    }

    /// Adds another generation's counters (for a prompt set's totals).
    public mutating func merge(_ o: SpeculativeStats) {
        rounds += o.rounds
        plainRounds += o.plainRounds
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
        verifyMilliseconds += o.verifyMilliseconds
        samplingMilliseconds += o.samplingMilliseconds
        totalMilliseconds += o.totalMilliseconds
        emittedTokens += o.emittedTokens
    }
}
