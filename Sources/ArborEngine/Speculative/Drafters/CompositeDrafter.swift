/// Several drafters as one: the free ones (prompt lookup, the suffix tree) every round, a costly
/// one (a draft model) only when the free ones leave the round short, and their trees merged into
/// one — a shared prefix becomes one path, so the target scores each candidate once.
///
/// Free drafters win on text that repeats (code that restates its prompt) and cost microseconds;
/// a draft model wins on new text and costs a forward pass per token. Asking the model only when
/// the free tree's expected accepted length (the sum of its nodes' path confidences) is below
/// `modelThreshold` keeps most of both: on code the model mostly rests, on prose it drafts.
///
/// Proposals drawn at random (a sampled model chain) carry the distribution they came from and
/// must not gain siblings from elsewhere, so such a tree is used alone.
public final class CompositeDrafter: Drafter {
    public let parts: [any Drafter]
    public let name: String
    /// Expected accepted tokens from the free drafters below which the costly ones draft too.
    public var modelThreshold: Float
    public var costsTimePerStep: Bool { parts.contains { $0.costsTimePerStep } }
    /// Rounds in which the costly drafters were asked, and skipped.
    public private(set) var costlyRounds = 0
    public private(set) var skippedCostlyRounds = 0

    public init(_ parts: [any Drafter], modelThreshold: Float = 1.5) {
        precondition(!parts.isEmpty, "a composite drafter needs at least one part")
        // Free drafters first: their trees decide whether the costly ones are needed.
        self.parts = parts.filter { !$0.costsTimePerStep } + parts.filter(\.costsTimePerStep)
        self.name = self.parts.map(\.name).joined(separator: "+")
        self.modelThreshold = modelThreshold
    }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        for p in parts { try p.begin(prompt: prompt, sampling: sampling) }
    }

    public func end(context: [Int32], promptCount: Int) {
        for p in parts { p.end(context: context, promptCount: promptCount) }
    }

    public func catchUp(context: [Int32]) throws {
        for p in parts where p.costsTimePerStep { try p.catchUp(context: context) }
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        var merged = TokenTree()
        var cost = DraftCost()
        for part in parts {
            if part.costsTimePerStep {
                let expected = merged.tokens.indices.reduce(Float(0)) { $0 + merged.pathConfidence(of: $1) }
                guard expected < modelThreshold else {
                    skippedCostlyRounds += 1
                    continue
                }
                costlyRounds += 1
            }
            let d = try part.draft(context: context, budget: budget)
            cost.catchUpMilliseconds += d.cost.catchUpMilliseconds
            cost.steps += d.cost.steps
            if d.tree.proposals.contains(where: { $0 != nil }) {
                merged = d.tree  // sampled proposals stand alone
                continue
            }
            if merged.proposals.contains(where: { $0 != nil }) { continue }
            merged = Self.merge(merged, d.tree)
        }
        return Draft(tree: Self.fit(merged, budget), cost: cost)
    }

    /// `a` with `b`'s paths added: a node of `b` whose token is already a child of its parent's
    /// match is that child (with the higher confidence), else a new node.
    static func merge(_ a: TokenTree, _ b: TokenTree) -> TokenTree {
        guard !a.isEmpty else { return b }
        var out = a
        var match = [Int](repeating: -1, count: b.count)
        for i in 0..<b.count {
            let parent = b.parents[i] < 0 ? -1 : match[b.parents[i]]
            if let existing = out.child(of: parent, token: b.tokens[i]) {
                if b.confidences[i] > out.confidences[existing] { out.setConfidence(b.confidences[i], of: existing) }
                match[i] = existing
            } else {
                match[i] = out.append(token: b.tokens[i], parent: parent, confidence: b.confidences[i])
            }
        }
        return out
    }

    /// The most confident nodes of `tree` that fit `budget` (closed under parents: a node's path
    /// confidence never exceeds its parent's, so taking them in that order keeps parents first).
    static func fit(_ tree: TokenTree, _ budget: DraftBudget) -> TokenTree {
        guard tree.count > budget.maxNodes || tree.maxDepth > budget.maxDepth || tree.maxWidth > budget.maxWidth else { return tree }
        let score = tree.tokens.indices.map { tree.pathConfidence(of: $0) }
        let order = tree.tokens.indices.sorted { score[$0] != score[$1] ? score[$0] > score[$1] : tree.depths[$0] < tree.depths[$1] }
        var keep = Set<Int>()
        var children = [Int: Int]()
        for i in order where keep.count < budget.maxNodes {
            let p = tree.parents[i]
            guard tree.depths[i] <= budget.maxDepth, p < 0 || keep.contains(p), children[p, default: 0] < budget.maxWidth else { continue }
            keep.insert(i)
            children[p, default: 0] += 1
        }
        return tree.subtree(keeping: keep).tree
    }
}
