/// Prompt-lookup drafting: the last n tokens of the context are looked up at earlier positions
/// of the same context, and what followed them there is proposed.
///
/// **Matching.** n runs from `maxMatch` down to `minMatch`; the first n with at least one earlier
/// occurrence wins, and up to `maxCandidates` of its occurrences (most recent first) are used.
/// Their continuations are merged into a trie — shared prefixes become one path, divergent
/// continuations become siblings — and the tree is grown best-first by path score within the
/// budget, so siblings come most frequent first, then most recent.
///
/// **Confidence.** For a node at depth d whose parent is reached by P of the matches (counting
/// only matches that continue past the parent), c of which continue with this token:
/// `confidence = c / (P + 1) · m / (m + 1)` with `m = n + d − 1`, the length of context the
/// node's prediction is conditioned on once its ancestors are accepted. The `+ 1` shrinks small
/// samples (one match gives at most 1/2), the length factor trusts short n-grams less. Monotone in
/// the agreement c/P, in the number of matches and in the match length; a rough score that the
/// controller calibrates.
///
/// **Index.** For each n, a hash-chain index over the context (as in zlib's matcher): `head[b]`
/// holds the newest position whose preceding n-gram hashes to bucket b, `prev[p]` the previous
/// position in the same bucket. Appending a token costs O(maxMatch²) hash steps; a lookup walks
/// one chain newest first and verifies each hit against the tokens, so collisions only cost time.
/// The index follows the context as it grows between calls; a context that does not extend the
/// indexed one (a new request, a rollback) is re-indexed from scratch in O(L · maxMatch²).
/// Memory: O(L · (maxMatch − minMatch + 1)) 32-bit positions.
public final class NGramDrafter: Drafter {
    public let name = "ngram"
    /// Shortest n-gram that counts as a match.
    public let minMatch: Int
    /// Longest n-gram tried first.
    public let maxMatch: Int
    /// Most occurrences whose continuations are merged into one tree.
    public let maxCandidates: Int
    /// Most chain entries inspected per n (bounds the cost when one n-gram is very frequent).
    public let maxChainSteps: Int

    /// The indexed context.
    private var tokens: [Int32] = []
    /// `chains[k]` indexes the n-grams with n = minMatch + k.
    private var chains: [Chains]
    private var tableMask = 0

    private struct Chains {
        /// Newest position per bucket, -1 when empty.
        var head: [Int32] = []
        /// `prev[p]`: the previous position in `p`'s bucket, -1 at the end of the chain.
        var prev: [Int32] = []
    }

    // Scratch for one draft call: matched positions and the continuation trie.
    private var matches: [Int] = []
    private var trieToken: [Int32] = []
    private var trieCount: [Int32] = []
    private var trieFirstChild: [Int32] = []
    private var trieLastChild: [Int32] = []
    private var trieNextSibling: [Int32] = []
    private var childScratch: [Int32] = []
    private var tailHashes: [UInt64] = []
    private var frontier = DraftFrontier()

    public init(minMatch: Int = 2, maxMatch: Int = 4, maxCandidates: Int = 16, maxChainSteps: Int = 256) {
        precondition(minMatch >= 1 && maxMatch >= minMatch, "need 1 <= minMatch <= maxMatch")
        precondition(maxCandidates >= 1 && maxChainSteps >= 1)
        self.minMatch = minMatch
        self.maxMatch = maxMatch
        self.maxCandidates = maxCandidates
        self.maxChainSteps = maxChainSteps
        chains = Array(repeating: Chains(), count: maxMatch - minMatch + 1)
        reset(capacity: 1024)
    }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        reindex(prompt)
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        Draft(tree: propose(context: context, budget: budget))
    }

    /// The tree for `context` (free: a lookup, microseconds).
    func propose(context: [Int32], budget: DraftBudget) -> TokenTree {
        sync(context)
        guard budget.maxNodes > 0, budget.maxDepth > 0 else { return TokenTree() }
        guard let n = findMatches() else { return TokenTree() }
        buildTrie(depthCap: budget.maxDepth)
        return grow(matchLength: n, budget: budget)
    }

    // MARK: Index

    /// Number of indexed context tokens (for tests and telemetry).
    var indexedCount: Int { tokens.count }

    private func reset(capacity: Int) {
        var size = 1024
        while size < 2 * (capacity + 1) { size <<= 1 }
        tableMask = size - 1
        for k in chains.indices {
            chains[k].head = Array(repeating: -1, count: size)
            chains[k].prev.removeAll(keepingCapacity: true)
            chains[k].prev.append(-1)  // position 0 has no preceding n-gram
        }
    }

    private func reindex(_ context: [Int32]) {
        tokens.removeAll(keepingCapacity: true)
        reset(capacity: context.count)
        append(context[...])
    }

    /// Brings the index up to `context`: appends when it extends the indexed tokens, otherwise
    /// re-indexes.
    private func sync(_ context: [Int32]) {
        let old = tokens.count
        let extends = context.count >= old && context.withUnsafeBufferPointer { c in
            tokens.withUnsafeBufferPointer { t in
                var i = 0
                while i < old, c[i] == t[i] { i += 1 }
                return i == old
            }
        }
        if extends {
            if context.count > old { append(context[old...]) }
        } else {
            reindex(context)
        }
    }

    private func append(_ new: ArraySlice<Int32>) {
        let target = tokens.count + new.count
        if 2 * (target + 1) > tableMask + 1 {
            // Grow the tables and re-chain every position in order, which reproduces the chains.
            let all = tokens + new
            tokens.removeAll(keepingCapacity: true)
            reset(capacity: 2 * target)
            tokens.reserveCapacity(all.count)
            for t in all { tokens.append(t); insertPosition(tokens.count) }
            return
        }
        for t in new { tokens.append(t); insertPosition(tokens.count) }
    }

    /// Chains position `p`: the n-grams `tokens[p-n..<p]`, for every indexed n that fits.
    @inline(__always)
    private func insertPosition(_ p: Int) {
        var h = Self.seed
        for k in chains.indices {
            let n = minMatch + k
            guard n <= p else {
                chains[k].prev.append(-1)
                continue
            }
            if k == 0 { for j in 1...n { h = Self.mix(h, tokens[p - j]) } } else { h = Self.mix(h, tokens[p - n]) }
            let b = Int(truncatingIfNeeded: Self.finish(h)) & tableMask
            chains[k].prev.append(chains[k].head[b])
            chains[k].head[b] = Int32(p)
        }
    }

    private static let seed: UInt64 = 0x243F_6A88_85A3_08D3

    @inline(__always)
    private static func mix(_ h: UInt64, _ t: Int32) -> UInt64 {
        (h ^ UInt64(UInt32(bitPattern: t))) &* 0x9E37_79B9_7F4A_7C15
    }

    @inline(__always)
    private static func finish(_ h: UInt64) -> UInt64 {
        var x = h
        x ^= x >> 31
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29
        return x
    }

    /// Fills `matches` with the continuation starts of the longest matching n (newest first) and
    /// returns that n, or nil when no n-gram of the context's tail occurs earlier.
    private func findMatches() -> Int? {
        let L = tokens.count
        matches.removeAll(keepingCapacity: true)
        guard L >= minMatch + 1 else { return nil }
        // Hashes of the tail n-grams, built the same way as insertPosition builds them.
        tailHashes.removeAll(keepingCapacity: true)
        tailHashes.append(contentsOf: repeatElement(0, count: chains.count))
        var h = Self.seed
        for k in chains.indices {
            let n = minMatch + k
            guard n <= L else { break }
            if k == 0 { for j in 1...n { h = Self.mix(h, tokens[L - j]) } } else { h = Self.mix(h, tokens[L - n]) }
            tailHashes[k] = h
        }
        return tokens.withUnsafeBufferPointer { t -> Int? in
            for k in chains.indices.reversed() {
                let n = minMatch + k
                // A match needs p >= n and p < L (it must be followed by at least one token).
                guard n < L else { continue }
                let b = Int(truncatingIfNeeded: Self.finish(tailHashes[k])) & tableMask
                var p = Int(chains[k].head[b])
                var steps = 0
                while p >= 0, steps < maxChainSteps, matches.count < maxCandidates {
                    steps += 1
                    if p < L {
                        var j = 1
                        while j <= n, t[p - j] == t[L - j] { j += 1 }
                        if j > n { matches.append(p) }
                    }
                    p = Int(chains[k].prev[p])
                }
                if !matches.isEmpty { return n }
            }
            return nil
        }
    }

    // MARK: Continuation trie and tree growth

    /// Merges the continuations of `matches` (up to `depthCap` tokens each) into a trie whose
    /// node 0 is the context; children are kept in first-insertion order, i.e. newest match first.
    private func buildTrie(depthCap: Int) {
        trieToken.removeAll(keepingCapacity: true)
        trieCount.removeAll(keepingCapacity: true)
        trieFirstChild.removeAll(keepingCapacity: true)
        trieLastChild.removeAll(keepingCapacity: true)
        trieNextSibling.removeAll(keepingCapacity: true)
        newTrieNode(token: -1)
        let L = tokens.count
        for p in matches {
            var node: Int32 = 0
            trieCount[0] += 1
            for i in p..<min(L, p + depthCap) {
                let t = tokens[i]
                var c = trieFirstChild[Int(node)]
                while c >= 0, trieToken[Int(c)] != t { c = trieNextSibling[Int(c)] }
                if c < 0 {
                    c = newTrieNode(token: t)
                    if trieLastChild[Int(node)] >= 0 {
                        trieNextSibling[Int(trieLastChild[Int(node)])] = c
                    } else {
                        trieFirstChild[Int(node)] = c
                    }
                    trieLastChild[Int(node)] = c
                }
                trieCount[Int(c)] += 1
                node = c
            }
        }
    }

    @discardableResult
    private func newTrieNode(token: Int32) -> Int32 {
        trieToken.append(token)
        trieCount.append(0)
        trieFirstChild.append(-1)
        trieLastChild.append(-1)
        trieNextSibling.append(-1)
        return Int32(trieToken.count - 1)
    }

    private func grow(matchLength n: Int, budget: DraftBudget) -> TokenTree {
        var tree = TokenTree()
        frontier.removeAll()
        pushChildren(of: 0, outParent: -1, pathScore: 1, depth: 1, matchLength: n, width: budget.maxWidth)
        while tree.count < budget.maxNodes, let c = frontier.popBest() {
            let index = tree.append(token: c.token, parent: c.parent, confidence: c.confidence)
            if c.depth < budget.maxDepth {
                pushChildren(of: c.source, outParent: index, pathScore: c.pathScore, depth: c.depth + 1,
                             matchLength: n, width: budget.maxWidth)
            }
        }
        return tree
    }

    /// Pushes the `width` best children of trie node `node` (most frequent, then newest).
    private func pushChildren(of node: Int32, outParent: Int, pathScore: Float, depth: Int, matchLength n: Int, width: Int) {
        childScratch.removeAll(keepingCapacity: true)
        var total: Int32 = 0
        var c = trieFirstChild[Int(node)]
        while c >= 0 {
            childScratch.append(c)
            total += trieCount[Int(c)]
            c = trieNextSibling[Int(c)]
        }
        guard total > 0 else { return }
        // Stable by construction: node indices grow in insertion (recency) order.
        childScratch.sort { a, b in
            trieCount[Int(a)] > trieCount[Int(b)] || (trieCount[Int(a)] == trieCount[Int(b)] && a < b)
        }
        let m = Float(n + depth - 1)
        let lengthFactor = m / (m + 1)
        for child in childScratch.prefix(width) {
            let conf = Float(trieCount[Int(child)]) / Float(total + 1) * lengthFactor
            frontier.push(source: child, parent: outParent, token: trieToken[Int(child)], confidence: conf,
                          pathScore: pathScore * conf, depth: depth)
        }
    }
}
