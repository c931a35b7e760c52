/// SuffixDecoding (Oliaro et al., 2024): proposes continuations of the longest suffix of the
/// context that occurs in the current request or in earlier requests' text, with a tree grown
/// greedily from how often each continuation followed it.
///
/// **Two indices**, as in the paper: one over the current request (prompt and output so far),
/// updated incrementally as the context grows, and one global index over earlier requests fed by
/// `end(context:promptCount:)` (outputs, and prompts too when `indexPrompts`), bounded by
/// `maxGlobalTokens` with the oldest requests evicted first. Each draft call grows a tree from
/// both and keeps the one with the larger expected number of accepted tokens.
///
/// **Structure: a suffix trie cut at depth D = `maxPatternLength + maxSpeculationDepth`, with
/// occurrence counts.** Every substring of length ≤ D of the indexed text is a path from the
/// root; a node's count is the number of positions where its path occurs. Chosen over a suffix
/// tree or automaton because counts stay exact under both appending (the current request grows
/// one token at a time: O(D) node updates, walking the D open suffixes one step down) and removal
/// (evicting a request decrements exactly the paths its insertion incremented), and because the
/// continuation statistic the paper needs — count(child) / count of continuations of the parent
/// — is read straight off a node's children. The price is memory: O(L · D) nodes for L indexed
/// tokens in the worst case (random text), 20 bytes each, against O(L) for a suffix tree; with the
/// defaults (D = 48, 32 768 global tokens) that is at most ~31 MB for the global index, plus
/// ~1 KB per token of the current request. Insertion of a sequence costs O(L · D) child lookups;
/// children are singly linked lists kept in move-to-front order (the root's children are a dense
/// array indexed by token), so a lookup is O(1) amortised for the common, repeated cases.
///
/// **Matching.** The pattern is the context's last ≤ `maxPatternLength` tokens. In the request
/// index the open suffixes are at hand, and the longest one that also occurred earlier (count ≥ 2)
/// is the match; in the global index the longest occurring suffix is found by binary search (a
/// trie is closed under taking suffixes of its paths, so occurrence is monotone in length).
///
/// **Tree.** From the matched node, best-first expansion by path score (the product of
/// confidences), each node's confidence being `count / (continuations of the parent + smoothing)`
/// — the empirical continuation probability, shrunk for small counts. Children below
/// `minConfidence` are not proposed. Adaptive size, the paper's rule: at most
/// `ceil(alpha · matchLength)` nodes, so long matches earn large trees and a one-token match a
/// single guess.
public final class SuffixDrafter: Drafter {
    public let name = "suffix"
    /// Longest context suffix looked up.
    public let maxPatternLength: Int
    /// Deepest proposal (the budget may cap it further).
    public let maxSpeculationDepth: Int
    /// Tree-size factor: at most `ceil(alpha · match length)` nodes.
    public let alpha: Double
    /// Pseudo-count added to a parent's continuations when computing confidences.
    public let smoothing: Float
    /// Continuations less likely than this are not proposed.
    public let minConfidence: Float
    /// Whether earlier requests' prompts are indexed along with their outputs.
    public let indexPrompts: Bool
    /// Most tokens kept in the global index; the oldest requests are evicted beyond it.
    public let maxGlobalTokens: Int

    private var global: CountingSuffixTrie
    private var history: [[Int32]] = []
    private var historyStart = 0
    /// Tokens currently in the global index.
    public private(set) var globalTokenCount = 0

    private var local: CountingSuffixTrie
    private var localTokens: [Int32] = []
    /// The request index's open suffixes: `cursor[i]` is the node of the last i + 1 tokens.
    private var cursor: [Int32] = []
    private var cursorScratch: [Int32] = []

    private var frontier = DraftFrontier()
    private var childScratch: [Int32] = []

    public init(maxPatternLength: Int = 32, maxSpeculationDepth: Int = 16, alpha: Double = 2,
                smoothing: Float = 1, minConfidence: Float = 0.1, indexPrompts: Bool = false,
                maxGlobalTokens: Int = 32_768) {
        precondition(maxPatternLength >= 1 && maxSpeculationDepth >= 1 && alpha > 0 && smoothing >= 0)
        precondition(maxGlobalTokens >= 0)
        self.maxPatternLength = maxPatternLength
        self.maxSpeculationDepth = maxSpeculationDepth
        self.alpha = alpha
        self.smoothing = smoothing
        self.minConfidence = minConfidence
        self.indexPrompts = indexPrompts
        self.maxGlobalTokens = maxGlobalTokens
        let depth = maxPatternLength + maxSpeculationDepth
        global = CountingSuffixTrie(depthLimit: depth)
        local = CountingSuffixTrie(depthLimit: depth)
    }

    /// Nodes in use by the global index (for tests and telemetry).
    public var globalNodeCount: Int { global.liveNodes }
    /// Nodes in use by the current request's index.
    public var requestNodeCount: Int { local.liveNodes }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        reindexRequest(prompt)
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        Draft(tree: propose(context: context, budget: budget))
    }

    /// The tree for `context` (free: a lookup, microseconds).
    func propose(context: [Int32], budget: DraftBudget) -> TokenTree {
        syncRequest(context)
        guard budget.maxNodes > 0, budget.maxDepth > 0 else { return TokenTree() }

        var best = TokenTree()
        var bestScore: Float = 0
        // The request index: the deepest open suffix that also occurred before.
        var m = 0
        while m < min(cursor.count, maxPatternLength), local.count[Int(cursor[m])] >= 2 { m += 1 }
        if m > 0 {
            (best, bestScore) = grow(from: cursor[m - 1], in: local, matchLength: m, budget: budget)
        }
        // The global index.
        if let (node, gm) = globalMatch(context) {
            let (tree, score) = grow(from: node, in: global, matchLength: gm, budget: budget)
            if score > bestScore { best = tree }
        }
        return best
    }

    public func end(context: [Int32], promptCount: Int) {
        let start = indexPrompts ? 0 : min(max(0, promptCount), context.count)
        var sequence = Array(context[start...])
        if sequence.count > maxGlobalTokens { sequence = Array(sequence.suffix(maxGlobalTokens)) }
        guard !sequence.isEmpty else { return }
        global.insert(sequence[...])
        history.append(sequence)
        globalTokenCount += sequence.count
        while globalTokenCount > maxGlobalTokens, historyStart < history.count {
            let old = history[historyStart]
            global.remove(old[...])
            globalTokenCount -= old.count
            history[historyStart] = []
            historyStart += 1
        }
        if historyStart > 64, historyStart * 2 > history.count {
            history.removeFirst(historyStart)
            historyStart = 0
        }
    }

    // MARK: Request index

    private func reindexRequest(_ context: [Int32]) {
        local.removeAll()
        localTokens.removeAll(keepingCapacity: true)
        cursor.removeAll(keepingCapacity: true)
        appendToRequest(context[...])
    }

    private func syncRequest(_ context: [Int32]) {
        let old = localTokens.count
        let extends = context.count >= old && context.withUnsafeBufferPointer { c in
            localTokens.withUnsafeBufferPointer { t in
                var i = 0
                while i < old, c[i] == t[i] { i += 1 }
                return i == old
            }
        }
        if extends {
            if context.count > old { appendToRequest(context[old...]) }
        } else {
            reindexRequest(context)
        }
    }

    private func appendToRequest(_ new: ArraySlice<Int32>) {
        localTokens.append(contentsOf: new)
        for t in new { local.extend(&cursor, with: t, scratch: &cursorScratch) }
    }

    // MARK: Global matching

    /// The node of the longest suffix of `context` (at most `maxPatternLength` tokens) that occurs
    /// in the global index and has a continuation there, and its length.
    private func globalMatch(_ context: [Int32]) -> (Int32, Int)? {
        guard global.liveNodes > 1 else { return nil }
        let L = context.count
        let tail = context[(L - min(L, maxPatternLength))...]
        // Largest m with the last m tokens present: present(m) is monotone decreasing in m.
        var lo = 0, hi = tail.count
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if global.find(tail.suffix(mid)) != nil { lo = mid } else { hi = mid - 1 }
        }
        // A path found only at the very end of stored sequences has no continuation: back off.
        var m = lo
        while m > 0 {
            if let node = global.find(tail.suffix(m)), global.firstChild[Int(node)] >= 0 { return (node, m) }
            m -= 1
        }
        return nil
    }

    // MARK: Tree growth

    /// Grows the speculation tree below `anchor`; returns it and its expected number of accepted
    /// tokens (the sum of its path scores).
    private func grow(from anchor: Int32, in trie: CountingSuffixTrie, matchLength m: Int,
                      budget: DraftBudget) -> (TokenTree, Float) {
        let sizeCap = min(budget.maxNodes, max(1, Int((alpha * Double(m)).rounded(.up))))
        let depthCap = min(budget.maxDepth, maxSpeculationDepth)
        var tree = TokenTree()
        var expected: Float = 0
        frontier.removeAll()
        pushChildren(of: anchor, in: trie, outParent: -1, pathScore: 1, depth: 1, width: budget.maxWidth)
        while tree.count < sizeCap, let c = frontier.popBest() {
            let index = tree.append(token: c.token, parent: c.parent, confidence: c.confidence)
            expected += c.pathScore
            if c.depth < depthCap {
                pushChildren(of: c.source, in: trie, outParent: index, pathScore: c.pathScore,
                             depth: c.depth + 1, width: budget.maxWidth)
            }
        }
        return (tree, expected)
    }

    /// Pushes the `width` most frequent children of `node` (ties: smaller token id) that pass
    /// `minConfidence`.
    private func pushChildren(of node: Int32, in trie: CountingSuffixTrie, outParent: Int, pathScore: Float,
                              depth: Int, width: Int) {
        childScratch.removeAll(keepingCapacity: true)
        var total: Int32 = 0
        var c = trie.firstChild[Int(node)]
        while c >= 0 {
            childScratch.append(c)
            total += trie.count[Int(c)]
            c = trie.nextSibling[Int(c)]
        }
        guard total > 0 else { return }
        childScratch.sort { a, b in
            let ca = trie.count[Int(a)], cb = trie.count[Int(b)]
            return ca > cb || (ca == cb && trie.token[Int(a)] < trie.token[Int(b)])
        }
        let denominator = Float(total) + smoothing
        for child in childScratch.prefix(width) {
            let conf = Float(trie.count[Int(child)]) / denominator
            guard conf >= minConfidence else { break }
            frontier.push(source: child, parent: outParent, token: trie.token[Int(child)], confidence: conf,
                          pathScore: pathScore * conf, depth: depth)
        }
    }
}

/// A suffix trie over token sequences, cut at depth `depthLimit`, with occurrence counts.
///
/// Node 0 is the root. A node's `count` is the number of positions at which its path occurs in
/// the indexed sequences, so a child's count never exceeds its parent's and the sum of a node's
/// children's counts is the number of its occurrences that have a next token. Struct of arrays,
/// 20 bytes a node; freed nodes are recycled through a free list.
struct CountingSuffixTrie {
    let depthLimit: Int
    private(set) var token: [Int32] = [-1]
    private(set) var count: [Int32] = [0]
    private(set) var firstChild: [Int32] = [-1]
    private(set) var nextSibling: [Int32] = [-1]
    private(set) var parent: [Int32] = [-1]
    /// The root's children, indexed by token (-1: none); the root's sibling list is unused.
    private var rootChild: [Int32] = []
    private var free: [Int32] = []

    init(depthLimit: Int) {
        precondition(depthLimit >= 2, "a suffix trie needs depth 2 to propose anything")
        self.depthLimit = depthLimit
    }

    /// Nodes in use, the root included.
    var liveNodes: Int { token.count - free.count }

    mutating func removeAll() {
        token.removeAll(keepingCapacity: true); token.append(-1)
        count.removeAll(keepingCapacity: true); count.append(0)
        firstChild.removeAll(keepingCapacity: true); firstChild.append(-1)
        nextSibling.removeAll(keepingCapacity: true); nextSibling.append(-1)
        parent.removeAll(keepingCapacity: true); parent.append(-1)
        for i in rootChild.indices { rootChild[i] = -1 }
        free.removeAll(keepingCapacity: true)
    }

    /// The child of `node` carrying `t`, if any.
    func child(of node: Int32, token t: Int32) -> Int32? {
        if node == 0 {
            let i = Int(t)
            return i >= 0 && i < rootChild.count && rootChild[i] >= 0 ? rootChild[i] : nil
        }
        var c = firstChild[Int(node)]
        while c >= 0 {
            if token[Int(c)] == t { return c }
            c = nextSibling[Int(c)]
        }
        return nil
    }

    /// The node whose path is `path`, if it occurs.
    func find(_ path: ArraySlice<Int32>) -> Int32? {
        guard path.count <= depthLimit else { return nil }
        var node: Int32 = 0
        for t in path {
            guard let c = child(of: node, token: t) else { return nil }
            node = c
        }
        return node
    }

    /// The child of `node` carrying `t`, created with count 0 if absent, moved to the front of
    /// its siblings so that repeated continuations are found first.
    private mutating func childOrInsert(of node: Int32, token t: Int32) -> Int32 {
        precondition(t >= 0, "token ids are non-negative")
        if node == 0 {
            let i = Int(t)
            if i >= rootChild.count { rootChild.append(contentsOf: repeatElement(-1, count: max(i + 1, 2 * rootChild.count) - rootChild.count)) }
            if rootChild[i] >= 0 { return rootChild[i] }
            let c = allocate(token: t, parent: 0)
            rootChild[i] = c
            return c
        }
        var prev: Int32 = -1
        var c = firstChild[Int(node)]
        while c >= 0 {
            if token[Int(c)] == t {
                if prev >= 0 {
                    nextSibling[Int(prev)] = nextSibling[Int(c)]
                    nextSibling[Int(c)] = firstChild[Int(node)]
                    firstChild[Int(node)] = c
                }
                return c
            }
            prev = c
            c = nextSibling[Int(c)]
        }
        let n = allocate(token: t, parent: node)
        nextSibling[Int(n)] = firstChild[Int(node)]
        firstChild[Int(node)] = n
        return n
    }

    private mutating func allocate(token t: Int32, parent p: Int32) -> Int32 {
        if let n = free.popLast() {
            token[Int(n)] = t; count[Int(n)] = 0; firstChild[Int(n)] = -1; nextSibling[Int(n)] = -1; parent[Int(n)] = p
            return n
        }
        token.append(t); count.append(0); firstChild.append(-1); nextSibling.append(-1); parent.append(p)
        return Int32(token.count - 1)
    }

    /// Appends `t` to the sequence whose open suffixes are `cursor` (`cursor[i]`: the node of
    /// its last i + 1 tokens, for lengths up to depthLimit − 1): counts one new occurrence of
    /// every suffix ending at `t`. O(depthLimit).
    mutating func extend(_ cursor: inout [Int32], with t: Int32, scratch: inout [Int32]) {
        scratch.removeAll(keepingCapacity: true)
        count[0] += 1
        let first = childOrInsert(of: 0, token: t)
        count[Int(first)] += 1
        scratch.append(first)
        for (i, node) in cursor.enumerated() {
            let c = childOrInsert(of: node, token: t)
            count[Int(c)] += 1
            // `node` has depth i + 1, so `c` has depth i + 2; keep it open if it can grow.
            if i + 2 < depthLimit { scratch.append(c) }
        }
        swap(&cursor, &scratch)
    }

    /// Indexes a whole sequence.
    mutating func insert(_ sequence: ArraySlice<Int32>) {
        var cursor: [Int32] = []
        var scratch: [Int32] = []
        cursor.reserveCapacity(depthLimit)
        scratch.reserveCapacity(depthLimit)
        for t in sequence { extend(&cursor, with: t, scratch: &scratch) }
    }

    /// Removes a sequence indexed earlier by `insert`: decrements exactly the paths its insertion
    /// incremented and frees nodes whose count reaches 0. O(L · depthLimit).
    mutating func remove(_ sequence: ArraySlice<Int32>) {
        let s = Array(sequence)
        for start in s.indices {
            count[0] -= 1
            var node: Int32 = 0
            var parentFreed = false
            for j in start..<min(s.count, start + depthLimit) {
                guard let c = child(of: node, token: s[j]) else {
                    preconditionFailure("removing a sequence that was not inserted")
                }
                count[Int(c)] -= 1
                if count[Int(c)] == 0 {
                    // Its descendants have count 0 too (counts never grow with depth) and are
                    // on this same walk, so the whole subtree is released as we descend.
                    if !parentFreed { unlink(c) }
                    free.append(c)
                    parentFreed = true
                }
                node = c
            }
        }
    }

    private mutating func unlink(_ n: Int32) {
        let p = parent[Int(n)]
        if p == 0 {
            rootChild[Int(token[Int(n)])] = -1
            return
        }
        var prev: Int32 = -1
        var c = firstChild[Int(p)]
        while c >= 0, c != n { prev = c; c = nextSibling[Int(c)] }
        precondition(c == n, "node not among its parent's children")
        if prev >= 0 { nextSibling[Int(prev)] = nextSibling[Int(n)] } else { firstChild[Int(p)] = nextSibling[Int(n)] }
    }
}
