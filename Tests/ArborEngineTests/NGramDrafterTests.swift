import Testing

@testable import ArborEngine

/// Checks what every drafter's tree must satisfy: the budget, topological order, distinct
/// sibling tokens, confidences in 0...1, deterministic proposals.
func expectWellFormed(_ tree: TokenTree, within budget: DraftBudget, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tree.count <= budget.maxNodes, sourceLocation: sourceLocation)
    #expect(tree.maxDepth <= budget.maxDepth, sourceLocation: sourceLocation)
    #expect(tree.isEmpty || tree.maxWidth <= budget.maxWidth, sourceLocation: sourceLocation)
    var siblings = Set<[Int]>()
    for i in 0..<tree.count {
        let p = tree.parents[i]
        #expect(p >= -1 && p < i, "node \(i) has parent \(p)", sourceLocation: sourceLocation)
        #expect(siblings.insert([p, Int(tree.tokens[i])]).inserted, "duplicate sibling token \(tree.tokens[i]) under \(p)",
                sourceLocation: sourceLocation)
        #expect((0...1).contains(tree.confidences[i]), "confidence \(tree.confidences[i])", sourceLocation: sourceLocation)
        #expect(tree.proposals[i] == nil, sourceLocation: sourceLocation)
    }
}

func microseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) * 1e-12
}

/// A seeded sequence over a small alphabet, so that n-grams repeat often.
func randomTokens(_ count: Int, alphabet: Int, seed: UInt64) -> [Int32] {
    var g = Xoshiro256StarStar(seed: seed)
    return (0..<count).map { _ in Int32(g.next() % UInt64(alphabet)) }
}

/// A 4 000-token "random-ish" context for benchmarks: random tokens from a 32 000 vocabulary with
/// phrases from a small bank mixed in, so that matches exist but are not everywhere.
func benchmarkContext(seed: UInt64) -> [Int32] {
    var g = Xoshiro256StarStar(seed: seed)
    let phrases = (0..<40).map { _ in (0..<(4 + Int(g.next() % 12))).map { _ in Int32(g.next() % 2000) } }
    var context: [Int32] = []
    while context.count < 4000 {
        if g.next() % 3 == 0 {
            context.append(contentsOf: phrases[Int(g.next() % 40)])
        } else {
            context.append(Int32(g.next() % 32000))
        }
    }
    return Array(context.prefix(4000))
}

@Suite("NGramDrafter")
struct NGramDrafterTests {
    let wide = DraftBudget(maxNodes: 16, maxDepth: 4, maxWidth: 4)

    @Test func repeatedPhraseIsProposedAsAChain() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        let tree = try d.draft(context: [1, 2, 3, 4, 5, 9, 1, 2, 3], budget: .chain(4)).tree
        #expect(tree.tokens == [4, 5, 9, 1])
        #expect(tree.parents == [-1, 0, 1, 2])
        expectWellFormed(tree, within: .chain(4))
    }

    @Test func noMatchGivesAnEmptyTree() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        #expect(try d.draft(context: [1, 2, 3, 4, 5, 6], budget: wide).tree.isEmpty)
        #expect(try d.draft(context: [], budget: wide).tree.isEmpty)
        #expect(try d.draft(context: [7], budget: wide).tree.isEmpty)
        // Matches exist but the budget forbids drafting.
        #expect(try d.draft(context: [1, 2, 3, 1, 2], budget: .none).tree.isEmpty)
    }

    @Test func longestMatchWins() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        let budget = DraftBudget(maxNodes: 10, maxDepth: 2, maxWidth: 2)
        // The 4-gram [0,1,2,3] occurs once before: it beats the 3-gram and proposes [5,6] only.
        let tree = try d.draft(context: [1, 2, 3, 7, 8, 0, 1, 2, 3, 5, 6, 0, 1, 2, 3], budget: budget).tree
        #expect(tree.tokens == [5, 6])
        #expect(tree.parents == [-1, 0])
    }

    @Test func divergentContinuationsBecomeSiblingsNewestFirst() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        let budget = DraftBudget(maxNodes: 10, maxDepth: 2, maxWidth: 2)
        let tree = try d.draft(context: [1, 2, 3, 7, 8, 10, 1, 2, 3, 5, 6, 11, 1, 2, 3], budget: budget).tree
        #expect(tree.tokens == [5, 7, 6, 8])
        #expect(tree.parents == [-1, -1, 0, 1])
        // One of two matches, match length 3: 1/(2+1) · 3/4.
        #expect(abs(tree.confidences[0] - 0.25) < 1e-6)
        expectWellFormed(tree, within: budget)
    }

    @Test func mostFrequentContinuationComesFirst() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        let budget = DraftBudget(maxNodes: 4, maxDepth: 1, maxWidth: 4)
        let tree = try d.draft(context: [1, 2, 3, 7, 10, 1, 2, 3, 5, 11, 1, 2, 3, 7, 12, 1, 2, 3], budget: budget).tree
        #expect(tree.tokens == [7, 5])
        #expect(tree.confidences[0] > tree.confidences[1])
    }

    @Test func sharedPrefixesAreMergedIntoOnePath() throws {
        let d = NGramDrafter(minMatch: 2, maxMatch: 4)
        let budget = DraftBudget(maxNodes: 10, maxDepth: 3, maxWidth: 2)
        let tree = try d.draft(context: [1, 2, 3, 4, 5, 6, 10, 1, 2, 3, 4, 5, 7, 11, 1, 2, 3], budget: budget).tree
        #expect(tree.tokens == [4, 5, 7, 6])
        #expect(tree.parents == [-1, 0, 1, 1])
        // Two agreeing matches are trusted more than one.
        #expect(tree.confidences[0] > tree.confidences[2])
        expectWellFormed(tree, within: budget)
    }

    @Test func widthLimitKeepsTheBestSiblings() throws {
        let d = NGramDrafter(minMatch: 1, maxMatch: 1)
        let budget = DraftBudget(maxNodes: 10, maxDepth: 1, maxWidth: 2)
        // After 9: 4 (twice), 5 (once, newest), 6 (once).
        let tree = try d.draft(context: [9, 6, 9, 4, 9, 4, 9, 5, 9], budget: budget).tree
        #expect(tree.tokens == [4, 5])
    }

    @Test func contextThatIsNotAnExtensionIsReindexed() throws {
        let d = NGramDrafter()
        _ = try d.draft(context: [1, 2, 3, 4, 1, 2], budget: wide).tree
        // A different request without begin: the old tokens must not leak into the proposals.
        let tree = try d.draft(context: [8, 9, 8, 9, 1, 2], budget: wide).tree
        let fresh = try NGramDrafter().draft(context: [8, 9, 8, 9, 1, 2], budget: wide).tree
        #expect(tree == fresh)
        #expect(tree.isEmpty)
        #expect(d.indexedCount == 6)
        try d.begin(prompt: [5, 6, 7], sampling: .greedy)
        #expect(d.indexedCount == 3)
        #expect(try d.draft(context: [5, 6, 7, 5, 6], budget: .chain(2)).tree.tokens == [7, 5])
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func incrementalIndexMatchesARebuiltOne(seed: UInt64) throws {
        // 2 600 tokens cross the first table growth (at 2 048).
        let all = randomTokens(2600, alphabet: 6, seed: seed)
        let budgets = [wide, DraftBudget(maxNodes: 40, maxDepth: 8, maxWidth: 3), .chain(5)]
        var g = Xoshiro256StarStar(seed: seed &+ 100)
        let incremental = NGramDrafter(minMatch: 1, maxMatch: 4)
        try incremental.begin(prompt: Array(all[..<50]), sampling: .greedy)
        var length = 50
        var round = 0
        while length < all.count {
            length = min(all.count, length + 1 + Int(g.next() % 4))
            let context = Array(all[..<length])
            let budget = budgets[round % budgets.count]
            round += 1
            let a = try incremental.draft(context: context, budget: budget).tree
            let b = try NGramDrafter(minMatch: 1, maxMatch: 4).draft(context: context, budget: budget).tree
            #expect(a == b, "round \(round), length \(length)")
            expectWellFormed(a, within: budget)
            if a != b { return }
        }
    }

    @Test func confidencesAreInRangeAndBudgetsRespectedOnRandomInput() throws {
        var g = Xoshiro256StarStar(seed: 7)
        for trial in 0..<50 {
            let context = randomTokens(50 + trial * 7, alphabet: 3 + trial % 5, seed: UInt64(trial))
            let budget = DraftBudget(maxNodes: 1 + Int(g.next() % 30), maxDepth: 1 + Int(g.next() % 8),
                                     maxWidth: 1 + Int(g.next() % 4))
            let tree = try NGramDrafter(minMatch: 1, maxMatch: 4).draft(context: context, budget: budget).tree
            #expect(!tree.isEmpty)
            expectWellFormed(tree, within: budget)
        }
    }

    /// Prints the cost of a draft call; no assertion on time (benchmarks never fail unit tests).
    @Test func benchmarkDraftCall() throws {
        let context = benchmarkContext(seed: 42)
        let d = NGramDrafter()
        let budget = DraftBudget(maxNodes: 32, maxDepth: 8, maxWidth: 4)
        try d.begin(prompt: Array(context[..<3000]), sampling: .greedy)
        let clock = ContinuousClock()
        var nodes = 0
        let calls = 1000
        var grown = Array(context[..<3000])
        let elapsed = try clock.measure {
            for i in 0..<calls {
                grown.append(context[3000 + i])
                nodes += try d.draft(context: grown, budget: budget).tree.count
            }
        }
        print("NGramDrafter: \(microseconds(elapsed) / Double(calls)) µs per draft call, context 3 000–4 000 tokens, "
              + "\(Double(nodes) / Double(calls)) nodes per tree")
        let fresh = clock.measure { _ = try? NGramDrafter().draft(context: context, budget: budget).tree }
        print("NGramDrafter: \(microseconds(fresh)) µs to index \(context.count) tokens from scratch and draft")
    }
}
