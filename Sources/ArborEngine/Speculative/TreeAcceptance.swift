/// Decides which path of a drafted tree the target accepts, given the target's logits at the
/// pending token and at every node. Pure logic over logit rows: the local verifier and the
/// server both use it, and the statistical tests drive it directly.
///
/// **Greedy** (temperature 0): walk from the pending token; at each step the target's choice is
/// its argmax (after the same penalties and suppression as plain decoding); follow the child
/// carrying that token, else stop and emit the argmax. The committed tokens are exactly plain
/// greedy's, because each node's logits are bit-identical to decoding its path alone.
///
/// **Sampling** (multi-draft speculative sampling, SpecInfer's rule): at a node whose target
/// distribution is p, keep a residual r = p. Try the children in order; child x proposed from q
///  - is accepted with probability min(1, r(x) / q(x)), where q is the distribution x was drawn
///    from, or a point mass on x for deterministic proposals (then the test is simply r(x));
///  - on rejection r ← normalise(max(0, r − q)) (for a point mass: r(x) ← 0).
/// If no child is accepted the next token is drawn from r. Each step is one round of the
/// standard proof (Leviathan et al.; Miao et al.): the emitted token is distributed exactly as p.
/// Siblings drawn from one q must be independent draws (duplicates allowed) — a drafter that
/// deduplicates sampled siblings must mark them deterministic instead.
public struct TreeAcceptor {
    public private(set) var sampler: StandardSampler
    private var residual: [Float] = []
    private var pathHistory: [Int32] = []
    /// Tests only: `true` replaces the residual draw after a rejection with a draw from p itself —
    /// the classic bug — so the statistical tests can show they catch it.
    var drawsFromTargetAfterRejection = false

    public init(sampling: SamplingParameters) throws(SamplingParametersError) {
        sampler = try StandardSampler(parameters: sampling)
    }

    public var isGreedy: Bool { sampler.parameters.isGreedy }

    /// Walks `tree`. `row(node)` gives the target's logits after `node` (`-1`: after the pending
    /// token), already masked for suppressed tokens. `history` is the committed sequence
    /// including the pending token (for repetition penalties; path tokens are appended to it).
    public mutating func accept(
        tree: TokenTree, history: [Int32],
        row: (Int) -> UnsafeBufferPointer<Float>
    ) -> (accepted: [Int], next: Int32) {
        pathHistory.removeAll(keepingCapacity: true)
        pathHistory.append(contentsOf: history)
        var accepted: [Int] = []
        var node = -1
        while true {
            let logits = row(node)
            let children = tree.children(of: node)
            if isGreedy {
                let choice = sampler.sample(logits: logits, history: pathHistory)
                guard let child = children.first(where: { tree.tokens[$0] == choice }) else {
                    return (accepted, choice)
                }
                accepted.append(child)
                pathHistory.append(choice)
                node = child
                continue
            }
            if residual.count != logits.count { residual = [Float](repeating: 0, count: logits.count) }
            residual.withUnsafeMutableBufferPointer { r in
                sampler.probabilities(logits: logits, history: pathHistory, into: r)
            }
            var total = 1.0
            var chosen: Int? = nil
            for child in children {
                let x = Int(tree.tokens[child])
                guard x >= 0, x < residual.count else { continue }
                let u = sampler.nextUniform()
                if let q = tree.proposals[child]?.probabilities {
                    let px = Double(residual[x]) / total
                    let qx = Double(q[x])
                    // qx == 0 cannot happen for a token really drawn from q; accept then only if p has it.
                    let ratio = qx > 0 ? px / qx : (px > 0 ? 1 : 0)
                    if u < ratio { chosen = child; break }
                    total = Self.subtract(q, from: &residual, scale: total)
                } else {
                    if u < Double(residual[x]) / total { chosen = child; break }
                    total -= Double(residual[x])
                    residual[x] = 0
                }
                if total <= 0 { break }
            }
            if let child = chosen {
                accepted.append(child)
                pathHistory.append(tree.tokens[child])
                node = child
                continue
            }
            let next: Int32
            if drawsFromTargetAfterRejection {
                next = sampler.sample(logits: logits, history: pathHistory)
            } else if total > 0 {
                next = residual.withUnsafeBufferPointer { sampler.sample(from: $0) }
            } else {
                // Only reachable through rounding (r and q equal to the last bit): p itself.
                next = sampler.sample(logits: logits, history: pathHistory)
            }
            return (accepted, next)
        }
    }

    /// r ← max(0, r/scale − q); returns the new (unnormalised) total.
    private static func subtract(_ q: [Float], from r: inout [Float], scale: Double) -> Double {
        var total = 0.0
        let inv = Float(1 / scale)
        r.withUnsafeMutableBufferPointer { rb in
            q.withUnsafeBufferPointer { qb in
                for i in 0..<rb.count {
                    let v = max(0, rb[i] * inv - qb[i])
                    rb[i] = v
                    total += Double(v)
                }
            }
        }
        return total
    }
}
