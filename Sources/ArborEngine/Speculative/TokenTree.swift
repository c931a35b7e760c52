/// A tree of drafted tokens continuing the committed context.
///
/// Nodes are stored in topological order: a node's parent always comes before it. `parents[i]`
/// is the index of node `i`'s parent, or `-1` for a root (a child of the last committed token).
/// This parents array is the whole structure — the wire protocol sends exactly it, and the
/// target's attention mask is derived from it (a node sees its ancestors and itself), so no
/// N×N mask is ever materialised outside the model.
///
/// Each node may carry the drafter's probability for it (`confidence`, used to size the tree) and
/// the distribution it was *sampled* from (`proposals`, used by the p/q acceptance rule). A node
/// without a proposal distribution is a deterministic proposal (n-gram, suffix, top-k children)
/// and is verified as a point mass.
public struct TokenTree: Sendable, Equatable {
    /// The drafted token of each node.
    public private(set) var tokens: [Int32] = []
    /// The parent node of each node, `-1` for roots.
    public private(set) var parents: [Int] = []
    /// Depth of each node: roots are 1.
    public private(set) var depths: [Int] = []
    /// The drafter's estimate that node `i` is accepted given its parent was (0...1), when known.
    public private(set) var confidences: [Float] = []
    /// For nodes drawn at random from a distribution q: that q over the whole vocabulary, shared by
    /// siblings drawn from the same parent. `nil` for deterministic proposals.
    public private(set) var proposals: [ProposalDistribution?] = []

    public init() {}

    /// A chain `tokens[0] → tokens[1] → …` under the committed context.
    public init(chain: [Int32], confidences: [Float]? = nil) {
        for (i, t) in chain.enumerated() {
            append(token: t, parent: i - 1, confidence: confidences?[i] ?? 1)
        }
    }

    /// Builds a tree from a parents array, validating it (the form the network protocol carries).
    public init(tokens: [Int32], parents: [Int], confidences: [Float]? = nil) throws(TokenTreeError) {
        guard tokens.count == parents.count else {
            throw .shape("\(tokens.count) tokens but \(parents.count) parents")
        }
        if let c = confidences, c.count != tokens.count {
            throw .shape("\(c.count) confidences for \(tokens.count) nodes")
        }
        for (i, p) in parents.enumerated() {
            guard p >= -1, p < i else { throw .notATree(node: i, parent: p) }
            append(token: tokens[i], parent: p, confidence: confidences?[i] ?? 1)
        }
    }

    /// Number of nodes.
    public var count: Int { tokens.count }
    public var isEmpty: Bool { tokens.isEmpty }
    /// The deepest node's depth (0 for an empty tree).
    public var maxDepth: Int { depths.max() ?? 0 }
    /// The largest number of children of any node (roots count as children of the context).
    public var maxWidth: Int {
        var counts = [Int: Int]()
        for p in parents { counts[p, default: 0] += 1 }
        return counts.values.max() ?? 0
    }

    /// Adds a node and returns its index. `parent` must be `-1` or an existing node.
    @discardableResult
    public mutating func append(token: Int32, parent: Int, confidence: Float = 1, proposal: ProposalDistribution? = nil) -> Int {
        precondition(parent >= -1 && parent < count, "parent \(parent) is not a node of this tree")
        tokens.append(token)
        parents.append(parent)
        depths.append(parent < 0 ? 1 : depths[parent] + 1)
        confidences.append(confidence)
        proposals.append(proposal)
        return count - 1
    }

    /// Indices of the children of `node` (`-1`: the roots), in insertion order.
    public func children(of node: Int) -> [Int] {
        parents.indices.filter { parents[$0] == node }
    }

    /// The child of `node` carrying `token`, if any.
    public func child(of node: Int, token: Int32) -> Int? {
        parents.indices.first { parents[$0] == node && tokens[$0] == token }
    }

    /// Nodes from the root down to `node`, inclusive.
    public func path(to node: Int) -> [Int] {
        var out: [Int] = []
        var n = node
        while n >= 0 { out.append(n); n = parents[n] }
        return out.reversed()
    }

    /// The tokens from the root down to `node`, inclusive.
    public func pathTokens(to node: Int) -> [Int32] { path(to: node).map { tokens[$0] } }

    /// The probability that `node` ends up on the accepted path, by the drafter's confidences
    /// (the product of its ancestors' and its own).
    public func pathConfidence(of node: Int) -> Float {
        var p: Float = 1
        var n = node
        while n >= 0 { p *= confidences[n]; n = parents[n] }
        return p
    }

    /// The sub-tree made of `keep` (which must be closed under taking parents), renumbered in
    /// the original order. Returns the tree and, for each new node, its old index.
    public func subtree(keeping keep: Set<Int>) -> (tree: TokenTree, oldIndices: [Int]) {
        var out = TokenTree()
        var newIndex = [Int](repeating: -1, count: count)
        var old: [Int] = []
        for i in 0..<count where keep.contains(i) {
            let p = parents[i]
            precondition(p < 0 || newIndex[p] >= 0, "kept node \(i) lost its parent \(p)")
            newIndex[i] = out.append(token: tokens[i], parent: p < 0 ? -1 : newIndex[p],
                                     confidence: confidences[i], proposal: proposals[i])
            old.append(i)
        }
        return (out, old)
    }

    /// The nodes below `node`, as a tree whose roots are `node`'s children (what remains to
    /// propose once `node` is committed).
    public func descendants(of node: Int) -> TokenTree {
        var out = TokenTree()
        var newIndex = [Int](repeating: -1, count: count)
        for i in (node + 1)..<max(count, node + 1) {
            let p = parents[i]
            if p == node {
                newIndex[i] = out.append(token: tokens[i], parent: -1, confidence: confidences[i], proposal: proposals[i])
            } else if p > node, newIndex[p] >= 0 {
                newIndex[i] = out.append(token: tokens[i], parent: newIndex[p], confidence: confidences[i], proposal: proposals[i])
            }
        }
        return out
    }

    /// Sets the drafter's confidence of a node.
    public mutating func setConfidence(_ value: Float, of node: Int) { confidences[node] = value }
}

/// The distribution a drafted token was drawn from (over the whole vocabulary, summing to 1).
/// A reference type so that siblings drawn from the same parent share one vector.
public final class ProposalDistribution: @unchecked Sendable, Equatable {
    public let probabilities: [Float]
    public init(_ probabilities: [Float]) { self.probabilities = probabilities }
    public static func == (a: ProposalDistribution, b: ProposalDistribution) -> Bool {
        a === b || a.probabilities == b.probabilities
    }
}

/// A parents array that does not describe a tree in topological order, or mismatched arrays.
public enum TokenTreeError: Error, Equatable, CustomStringConvertible, Sendable {
    case notATree(node: Int, parent: Int)
    case shape(String)

    public var description: String {
        switch self {
        case let .notATree(node, parent):
            "node \(node) has parent \(parent): a parent must be -1 (the context) or an earlier node"
        case let .shape(s): "malformed token tree: \(s)"
        }
    }
}
