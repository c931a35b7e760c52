import ArborModels
import ArborTokenizers

/// Drafts with a smaller model of the same vocabulary.
///
/// - **Greedy target, or `maxWidth > 1`**: a dynamic tree, EAGLE-2 style. Each depth feeds the
///   `maxWidth` most probable frontier nodes (by cumulative path probability under the draft) in
///   one batch and adds each one's `maxWidth` most probable children; the tree returned keeps the
///   `maxNodes` most probable nodes. Proposals are deterministic (verified as point masses); each
///   node's confidence is its draft probability.
/// - **Sampling target with `maxWidth == 1`**: a chain whose tokens are *sampled* from the draft's
///   distribution q under the target's sampling settings; each node carries q, so verification
///   uses the p/q rule.
///
/// The draft cache stays in step with the committed context: after each round the accepted
/// nodes it already computed are kept in place (`keepPath`) and only the tokens it has not seen
/// (usually the target's own last token) are fed before drafting again.
public final class ModelDrafter: Drafter {
    public let model: any LanguageModel
    public let name: String
    public var costsTimePerStep: Bool { true }
    public var deepens: Bool { true }

    private var cache: (any KVCache)?
    /// The committed tokens held by the cache's first slots.
    private var cachedTokens: [Int32] = []
    /// The last candidate tree, the cache slot of each node fed to the model (-1 if not fed), and
    /// the slot where that tree began.
    private var lastTree = TokenTree()
    private var lastSlots: [Int] = []
    private var sampler: StandardSampler?
    private var scratch: [Float] = []
    /// Draft forward passes in the current `draft` call (for cost accounting).
    private var lastSteps = 0

    /// Wraps `model`; refuses it when its vocabulary is not the target's (`targetFingerprint`
    /// from `Tokenizer.vocabularyFingerprint`).
    public init(model: any LanguageModel, tokenizer: any Tokenizer, name: String,
                targetTokenizer: any Tokenizer, targetName: String) throws {
        let mine = tokenizer.vocabularyFingerprint, theirs = targetTokenizer.vocabularyFingerprint
        guard tokenizer.vocabularySize == targetTokenizer.vocabularySize else {
            throw SpeculativeError.vocabularyMismatch(
                draft: name, target: targetName,
                reason: "vocabulary sizes differ (\(tokenizer.vocabularySize) vs \(targetTokenizer.vocabularySize))")
        }
        guard mine == theirs else {
            throw SpeculativeError.vocabularyMismatch(
                draft: name, target: targetName,
                reason: "the token tables differ (fingerprints \(String(mine, radix: 16)) vs \(String(theirs, radix: 16)))")
        }
        self.model = model
        self.name = "model:\(name)"
    }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        // The draft's draws come from a stream of their own. Seeded like the target's sampler,
        // the target's acceptance test would reuse the very uniform that picked each draft token
        // and accept it more often than p/q says (the χ² test of sampled chains caught this).
        var own = sampling
        own.seed = Self.draftSeed(sampling.seed)
        sampler = sampling.isGreedy ? nil : try StandardSampler(parameters: own)
        // A trimmed draft head (VocabTrim) also scores the prompt's tokens: answers copy them.
        (model as? DecoderModel)?.includeOutputTokens(prompt)
        let c = model.makeCache(capacity: prompt.count + 256)
        cache = c
        cachedTokens = []
        lastTree = TokenTree()
        lastSlots = []
        // Read all but the last prompt token now (charged to prefill, not to drafting).
        let body = Array(prompt.dropLast())
        try model.prefill(body, cache: c)
        cachedTokens = body
        lastContextCount = prompt.count
        lastDepth = 0
    }

    public func end(context: [Int32], promptCount: Int) {
        cache = nil
        cachedTokens = []
        lastTree = TokenTree()
        lastSlots = []
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        lastSteps = 0
        guard let cache, budget.maxNodes > 0, budget.maxDepth > 0, !context.isEmpty else { return Draft() }
        let start = MonotonicClock.now
        // A round commits at most (last depth + 1) tokens; feeding those is part of drafting.
        // Growth beyond that means rounds went by without drafting: that feed is catching up.
        let lagging = context.count - lastContextCount > lastDepth + 1
        let rootLogits = try catchUp(context: context, cache: cache)
        let catchUpMilliseconds = lagging ? MonotonicClock.millisecondsSince(start) : 0
        lastContextCount = context.count
        lastSteps = 1
        let tree: TokenTree
        if let sampler, budget.maxWidth == 1 {
            tree = try sampledChain(rootLogits: rootLogits, budget: budget, sampler: sampler, cache: cache, context: context)
        } else {
            tree = try topKTree(rootLogits: rootLogits, budget: budget, cache: cache, context: context)
        }
        // The depth drafted, not the budget's: a deepening draft may stop well short of it.
        lastDepth = tree.maxDepth
        return Draft(tree: tree, cost: DraftCost(catchUpMilliseconds: catchUpMilliseconds, steps: lastSteps))
    }

    public func catchUp(context: [Int32]) throws {
        guard let cache, !context.isEmpty else { return }
        _ = try catchUp(context: context, cache: cache)
        // The next draft counts only what arrives after this as catching up.
        lastContextCount = context.count
        lastDepth = 0
    }

    /// A seed for the draft's own random stream, derived from the request's (SplitMix64's
    /// finaliser of the seed offset by a constant), so runs stay reproducible.
    static func draftSeed(_ seed: UInt64) -> UInt64 {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Keeping the cache in step

    /// Brings the cache to exactly `context` and returns the draft logits after its last token.
    private var lastContextCount = 0
    private var lastDepth = 0

    private func catchUp(context: [Int32], cache: any KVCache) throws -> [Float] {
        // The committed part must still be a prefix of the context (it always is within a request).
        var keep = 0
        while keep < cachedTokens.count, keep < context.count, cachedTokens[keep] == context[keep] { keep += 1 }
        if keep < cachedTokens.count {
            cache.truncate(to: keep)
            cachedTokens.removeLast(cachedTokens.count - keep)
            lastTree = TokenTree()
        }
        // Reuse the fed tree nodes along the newly committed tokens.
        let base = cachedTokens.count
        var reused: [Int] = []
        if !lastTree.isEmpty, base == lastTreeBase {
            var node = -1
            var k = base
            while k < context.count - 1, let child = lastTree.child(of: node, token: context[k]), lastSlots[child] >= 0 {
                reused.append(lastSlots[child] - base)
                node = child
                k += 1
            }
        }
        try cache.keepPath(base: base, indices: reused)
        cachedTokens.append(contentsOf: context[base..<(base + reused.count)])
        lastTree = TokenTree()
        lastSlots = []
        // Feed the rest (at least the last token, whose logits we need).
        let missing = Array(context[cachedTokens.count...])
        let logits = try model.forward(.sequential(missing, startingAt: cache.count, lastLogitsOnly: true), cache: cache)
        cachedTokens = context
        return Array(logits.row(0))
    }

    private var lastTreeBase = 0

    // MARK: Trees

    private func topKTree(rootLogits: [Float], budget: DraftBudget, cache: any KVCache, context: [Int32]) throws -> TokenTree {
        let base = cache.count  // == context.count
        var tree = TokenTree()
        var pathP: [Float] = []
        // Path probabilities under the policy's calibration (only when the draft may deepen).
        var calibratedP: [Double] = []
        var slots: [Int] = []
        func addChildren(of parent: Int, logits: ArraySlice<Float>) {
            let parentP: Float = parent < 0 ? 1 : pathP[parent]
            let parentC = parent < 0 ? 1 : calibratedP[parent]
            for (token, p) in Self.topK(logits, k: budget.maxWidth, scratch: &scratch) {
                tree.append(token: token, parent: parent, confidence: p)
                pathP.append(parentP * p)
                calibratedP.append(parentC * (budget.deepening?.probability(p) ?? 1))
                slots.append(-1)
            }
        }
        addChildren(of: -1, logits: rootLogits[...])
        var frontier = Array(tree.tokens.indices)
        for depth in stride(from: 2, through: budget.maxDepth, by: 1) {
            // Expand the most probable nodes of the last depth, at most maxWidth of them.
            frontier.sort { pathP[$0] > pathP[$1] }
            frontier = Array(frontier.prefix(budget.maxWidth))
            // Past the planned depth, only paths likely enough that one more level pays.
            if let deepening = budget.deepening {
                frontier = frontier.filter { deepening.expands(depth: depth - 1, pathProbability: calibratedP[$0]) }
            }
            // Stop when even the best new node could not make the final cut.
            let cut = Self.kthLargest(pathP, budget.maxNodes)
            frontier = frontier.filter { pathP[$0] * 0.999 >= cut || tree.count < budget.maxNodes }
            if frontier.isEmpty { break }
            let first = cache.count
            var visibility: [[Int]] = []
            for (j, node) in frontier.enumerated() {
                slots[node] = first + j
                visibility.append(tree.path(to: node).dropLast().map { slots[$0] })
            }
            let batch = ForwardBatch(
                tokens: frontier.map { tree.tokens[$0] },
                positions: frontier.map { Int32(base - 1 + tree.depths[$0]) },
                mask: .explicit(visible: frontier.indices.map { [$0] }),
                cacheVisibility: CacheVisibility(sharedPrefix: base, extraSlots: visibility))
            let logits = try model.forward(batch, cache: cache)
            lastSteps += 1
            var next: [Int] = []
            for (j, node) in frontier.enumerated() {
                let before = tree.count
                addChildren(of: node, logits: logits.row(j))
                next += Array(before..<tree.count)
            }
            frontier = next
        }
        lastTree = tree
        lastSlots = slots
        lastTreeBase = base
        // Keep the maxNodes most probable (closed under parents: P only falls along a path).
        let order = tree.tokens.indices.sorted { pathP[$0] != pathP[$1] ? pathP[$0] > pathP[$1] : $0 < $1 }
        return tree.subtree(keeping: Set(order.prefix(budget.maxNodes))).tree
    }

    private func sampledChain(rootLogits: [Float], budget: DraftBudget, sampler: StandardSampler, cache: any KVCache, context: [Int32]) throws -> TokenTree {
        var sampler = sampler
        defer { self.sampler = sampler }
        let base = cache.count
        var tree = TokenTree()
        var slots: [Int] = []
        var history = context
        var logits = rootLogits
        let depth = min(budget.maxDepth, budget.maxNodes)
        var calibratedP = 1.0
        for d in 1...depth {
            var q = [Float](repeating: 0, count: logits.count)
            sampler.probabilities(logits: logits, history: history, into: &q)
            let x = sampler.sample(from: q)
            let node = tree.append(token: x, parent: d - 2, confidence: q[Int(x)], proposal: ProposalDistribution(q))
            slots.append(-1)
            history.append(x)
            if d == depth { break }
            // Past the planned depth, only while the chain stays likely. The stop depends on the
            // draft's own samples alone, so each position's p/q test stays exact.
            if let deepening = budget.deepening {
                calibratedP *= deepening.probability(q[Int(x)])
                if !deepening.expands(depth: d, pathProbability: calibratedP) { break }
            }
            slots[node] = cache.count
            let out = try model.forward(.sequential([x], startingAt: cache.count), cache: cache)
            lastSteps += 1
            logits = Array(out.row(0))
        }
        lastTree = tree
        lastSlots = slots
        lastTreeBase = base
        return tree
    }

    /// The k most probable tokens under softmax(logits), most probable first, with their
    /// probabilities (the vectorised exp of the sampler; one pass for the top k).
    static func topK(_ logits: ArraySlice<Float>, k: Int, scratch: inout [Float]) -> [(Int32, Float)] {
        logits.withUnsafeBufferPointer { l -> [(Int32, Float)] in
            guard l.count > 0 else { return [] }
            if scratch.count < l.count { scratch = [Float](repeating: 0, count: l.count) }
            let (maxLogit, _) = SamplingKernels.maxAndArgmax(l)
            let total = scratch.withUnsafeMutableBufferPointer { SamplingKernels.expShifted(l, shift: maxLogit, into: $0.baseAddress!) }
            var best: [(index: Int, logit: Float)] = []  // ascending by logit; ties keep the lower id
            best.reserveCapacity(k + 1)
            for i in 0..<l.count {
                let x = l[i]
                if best.count == k, x <= best[0].logit { continue }
                let at = best.firstIndex { $0.logit >= x } ?? best.count
                best.insert((i, x), at: at)
                if best.count > k { best.removeFirst() }
            }
            return best.reversed().map { (Int32($0.index), total > 0 ? scratch[$0.index] / Float(total) : 0) }
        }
    }

    static func kthLargest(_ values: [Float], _ k: Int) -> Float {
        guard k > 0, values.count >= k else { return 0 }
        return values.sorted(by: >)[k - 1]
    }
}

