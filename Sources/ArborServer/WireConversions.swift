import ArborEngine
import ArborWire

/// Checks a client's requests against the target and the server's limits. Pure functions: the
/// connection state machine calls them, tests call them directly.
/// One model a server offers a connection: what hello (or `selectModel`) says about it and the
/// limits its requests are checked against.
struct ModelChoice: Sendable {
    let info: ServerInfo
    let validator: RequestValidator
}

struct RequestValidator {
    let vocabularySize: Int
    let contextLength: Int
    let maxTreeNodes: Int
    let maxSessionTokens: Int

    func session(_ m: OpenSession) throws(ErrorFrame) -> SessionSetup {
        let sampling = SamplingParameters(wire: m.sampling)
        do { try sampling.validate() } catch {
            throw ErrorFrame(code: .invalidParameters, message: "sampling parameters: \(error)")
        }
        let capacity = Int(m.capacity)
        let limit = min(maxSessionTokens, contextLength)
        guard capacity >= 2 else { throw ErrorFrame(code: .invalidParameters, message: "capacity \(capacity) is below 2 tokens") }
        guard capacity <= limit else {
            throw ErrorFrame(code: .sessionLimit, message: "a session of \(capacity) tokens exceeds this server's limit of \(limit) tokens per session")
        }
        guard m.suppressedTokens.count <= 1024 else {
            throw ErrorFrame(code: .invalidParameters, message: "\(m.suppressedTokens.count) suppressed tokens (at most 1024)")
        }
        for t in m.suppressedTokens where Int(t) >= vocabularySize {
            throw ErrorFrame(code: .tokenOutOfVocabulary, message: "suppressed token \(t) is outside the vocabulary (0..<\(vocabularySize))")
        }
        return SessionSetup(sampling: sampling, capacity: capacity, suppressedTokens: m.suppressedTokens.map { Int32($0) })
    }

    func prompt(_ tokens: [UInt32], soFar: Int, capacity: Int) throws(ErrorFrame) -> [Int32] {
        // The prompt plus the pending round's tree root must fit: at least one token of room.
        guard soFar + tokens.count < capacity else {
            throw ErrorFrame(code: .promptTooLarge, message: "a prompt of \(soFar + tokens.count) tokens does not fit the session's capacity of \(capacity)")
        }
        var out = [Int32](repeating: 0, count: tokens.count)
        for (i, t) in tokens.enumerated() {
            guard Int(t) < vocabularySize else {
                throw ErrorFrame(code: .tokenOutOfVocabulary, message: "prompt token \(i) = \(t) is outside the vocabulary (0..<\(vocabularySize))")
            }
            out[i] = Int32(t)
        }
        return out
    }

    /// A validated tree with its proposal distributions (dense, as the acceptance rule needs).
    func tree(_ m: Verify, committed: Int, capacity: Int) throws(ErrorFrame) -> TokenTree {
        let n = m.tokens.count
        func fail(_ code: WireErrorCode, _ text: String) -> ErrorFrame { ErrorFrame(code: code, round: m.round, message: text) }
        guard n <= maxTreeNodes else { throw fail(.treeTooLarge, "a tree of \(n) nodes exceeds this server's limit of \(maxTreeNodes)") }
        // Committed tokens stay in the cache but the pending one is re-scored with the tree.
        guard committed + n <= capacity else {
            throw fail(.treeTooLarge, "a tree of \(n) nodes does not fit: \(committed) tokens committed of the session's \(capacity)")
        }
        guard m.parents.count == n else { throw fail(.notATree, "\(n) tokens but \(m.parents.count) parents") }
        for (i, p) in m.parents.enumerated() where p < -1 || Int(p) >= i {
            throw fail(.notATree, "node \(i) has parent \(p): a parent must be -1 (the context) or an earlier node")
        }
        for (i, t) in m.tokens.enumerated() where Int(t) >= vocabularySize {
            throw fail(.tokenOutOfVocabulary, "node \(i) token \(t) is outside the vocabulary (0..<\(vocabularySize))")
        }
        var proposals: [ProposalDistribution] = []
        if !m.distributions.isEmpty {
            guard m.distributionIndex.count == n else { throw fail(.invalidParameters, "\(m.distributionIndex.count) distribution indices for \(n) nodes") }
            for (k, d) in m.distributions.enumerated() {
                guard d.tokens.count <= vocabularySize else { throw fail(.invalidParameters, "distribution \(k) has \(d.tokens.count) entries, more than the vocabulary") }
                var dense = [Float](repeating: 0, count: vocabularySize)
                var sum: Double = 0
                for (t, p) in zip(d.tokens, d.probabilities) {
                    guard Int(t) < vocabularySize else { throw fail(.tokenOutOfVocabulary, "distribution \(k) names token \(t), outside the vocabulary") }
                    guard p.isFinite, p > 0, p <= 1 else { throw fail(.invalidParameters, "distribution \(k) gives token \(t) probability \(p)") }
                    guard dense[Int(t)] == 0 else { throw fail(.invalidParameters, "distribution \(k) lists token \(t) twice") }
                    dense[Int(t)] = p
                    sum += Double(p)
                }
                guard abs(sum - 1) < 1e-3 else { throw fail(.invalidParameters, "distribution \(k) sums to \(sum), not 1") }
                proposals.append(ProposalDistribution(dense))
            }
            for (i, index) in m.distributionIndex.enumerated() where index != Verify.deterministic {
                guard Int(index) < proposals.count else { throw fail(.invalidParameters, "node \(i) names distribution \(index) of \(proposals.count)") }
                guard proposals[Int(index)].probabilities[Int(m.tokens[i])] > 0 else {
                    throw fail(.invalidParameters, "node \(i) token \(m.tokens[i]) has probability 0 in the distribution it was drawn from")
                }
            }
        }
        var tree = TokenTree()
        for i in 0..<n {
            let index = proposals.isEmpty ? Verify.deterministic : m.distributionIndex[i]
            tree.append(token: Int32(m.tokens[i]), parent: Int(m.parents[i]),
                        proposal: index == Verify.deterministic ? nil : proposals[Int(index)])
        }
        return tree
    }
}
