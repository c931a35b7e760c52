import Testing

@testable import ArborEngine

@Suite("SuffixDrafter")
struct SuffixDrafterTests {
    @Test func repeatedPhraseIsProposedAsAChain() throws {
        let d = SuffixDrafter()
        let tree = try d.draft(context: [1, 2, 3, 4, 5, 9, 1, 2, 3], budget: .chain(4)).tree
        #expect(tree.tokens == [4, 5, 9, 1])
        #expect(tree.parents == [-1, 0, 1, 2])
        // One earlier occurrence, smoothed: 1 / (1 + 1).
        #expect(tree.confidences == [0.5, 0.5, 0.5, 0.5])
        expectWellFormed(tree, within: .chain(4))
    }

    @Test func noMatchGivesAnEmptyTree() throws {
        let d = SuffixDrafter()
        #expect(try d.draft(context: [1, 2, 3, 4, 5, 6], budget: .chain(4)).tree.isEmpty)
        #expect(try d.draft(context: [], budget: .chain(4)).tree.isEmpty)
        #expect(try d.draft(context: [1, 2, 1], budget: .none).tree.isEmpty)
    }

    @Test func divergentContinuationsBecomeSiblings() throws {
        let d = SuffixDrafter()
        let budget = DraftBudget(maxNodes: 10, maxDepth: 2, maxWidth: 2)
        let tree = try d.draft(context: [1, 2, 3, 7, 8, 10, 1, 2, 3, 5, 6, 11, 1, 2, 3], budget: budget).tree
        // Equal counts: smaller token first; then best-first by path score.
        #expect(tree.tokens == [5, 7, 6, 8])
        #expect(tree.parents == [-1, -1, 0, 1])
        #expect(abs(tree.confidences[0] - 1.0 / 3) < 1e-6)
        expectWellFormed(tree, within: budget)
    }

    @Test func mostFrequentContinuationComesFirst() throws {
        let d = SuffixDrafter()
        let budget = DraftBudget(maxNodes: 4, maxDepth: 1, maxWidth: 4)
        let tree = try d.draft(context: [1, 2, 3, 7, 10, 1, 2, 3, 5, 11, 1, 2, 3, 7, 12, 1, 2, 3], budget: budget).tree
        #expect(tree.tokens == [7, 5])
        #expect(tree.confidences == [0.5, 0.25])
    }

    @Test func treeSizeGrowsWithMatchLength() throws {
        // A one-token match ([1]) earns ceil(alpha · 1) nodes.
        let context: [Int32] = [5, 1, 2, 3, 4, 6, 1]
        #expect(try SuffixDrafter(alpha: 2).draft(context: context, budget: .chain(8)).tree.tokens == [2, 3])
        #expect(try SuffixDrafter(alpha: 1).draft(context: context, budget: .chain(8)).tree.tokens == [2])
        // A four-token match earns up to eight.
        let long: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2, 3, 4]
        #expect(try SuffixDrafter(alpha: 2).draft(context: long, budget: .chain(16)).tree.count == 8)
    }

    @Test func minConfidencePrunesRareContinuations() throws {
        // After [1]: 2 four times, 9 once; 1/(5+1) < 0.2 is dropped.
        let context: [Int32] = [1, 2, 1, 2, 1, 2, 1, 2, 1, 9, 1]
        let tree = try SuffixDrafter(alpha: 4, minConfidence: 0.2).draft(context: context, budget: DraftBudget(maxNodes: 4, maxDepth: 1, maxWidth: 4)).tree
        #expect(tree.tokens == [2])
    }

    @Test func learnsAcrossRequests() throws {
        let d = SuffixDrafter()
        try d.begin(prompt: [100, 101, 102], sampling: .greedy)
        #expect(try d.draft(context: [100, 101, 102, 1, 2, 3, 4], budget: .chain(4)).tree.isEmpty)
        d.end(context: [100, 101, 102, 1, 2, 3, 4, 5, 6, 7, 8], promptCount: 3)
        #expect(d.globalTokenCount == 8)

        try d.begin(prompt: [200, 201, 2, 3], sampling: .greedy)
        let tree = try d.draft(context: [200, 201, 2, 3], budget: .chain(4)).tree
        #expect(tree.tokens == [4, 5, 6, 7])
        expectWellFormed(tree, within: .chain(4))
        // Prompts are not indexed by default.
        #expect(try d.draft(context: [300, 100, 101], budget: .chain(4)).tree.isEmpty)

        let withPrompts = SuffixDrafter(indexPrompts: true)
        withPrompts.end(context: [100, 101, 102, 1, 2, 3, 4, 5, 6, 7, 8], promptCount: 3)
        #expect(try withPrompts.draft(context: [300, 100, 101], budget: .chain(3)).tree.tokens == [102, 1, 2])
    }

    @Test func theBetterOfTheTwoIndicesWins() throws {
        let d = SuffixDrafter()
        // Earlier requests agree: after [7, 8] comes 9, three times.
        for _ in 0..<3 { d.end(context: [50, 7, 8, 9, 51], promptCount: 1) }
        try d.begin(prompt: [7, 8, 4, 7, 8], sampling: .greedy)
        let tree = try d.draft(context: [7, 8, 4, 7, 8], budget: DraftBudget(maxNodes: 1, maxDepth: 1, maxWidth: 1)).tree
        // The request itself says 4 (1 of 1: 0.5); the global index says 9 (3 of 3: 0.75).
        #expect(tree.tokens == [9])
        #expect(tree.confidences == [0.75])
    }

    @Test func evictionKeepsTheGlobalIndexBoundedAndExact() throws {
        let d = SuffixDrafter(maxPatternLength: 8, maxSpeculationDepth: 4, maxGlobalTokens: 100)
        var outputs: [[Int32]] = []
        for r in 0..<40 {
            let output = randomTokens(30, alphabet: 12, seed: UInt64(r))
            outputs.append(output)
            d.end(context: [999] + output, promptCount: 1)
            #expect(d.globalTokenCount <= 100)
            #expect(d.globalNodeCount <= 1 + 100 * 12)
        }
        #expect(d.globalTokenCount == 90)
        // The same index as one built from the three retained requests only.
        let fresh = SuffixDrafter(maxPatternLength: 8, maxSpeculationDepth: 4, maxGlobalTokens: 100)
        for output in outputs.suffix(3) { fresh.end(context: output, promptCount: 0) }
        #expect(d.globalNodeCount == fresh.globalNodeCount)
        let budget = DraftBudget(maxNodes: 12, maxDepth: 4, maxWidth: 3)
        for q in 0..<30 {
            let query = randomTokens(6, alphabet: 12, seed: UInt64(1000 + q))
            try d.begin(prompt: query, sampling: .greedy)
            try fresh.begin(prompt: query, sampling: .greedy)
            #expect(try d.draft(context: query, budget: budget).tree == fresh.draft(context: query, budget: budget).tree)
        }
        // A request longer than the cap keeps only its last tokens.
        d.end(context: randomTokens(500, alphabet: 12, seed: 77), promptCount: 0)
        #expect(d.globalTokenCount == 100)
        #expect(d.globalNodeCount <= 1 + 100 * 12)
    }

    @Test func removingEverythingLeavesAnEmptyTrie() {
        var trie = CountingSuffixTrie(depthLimit: 5)
        let a = randomTokens(200, alphabet: 4, seed: 1)
        let b = randomTokens(150, alphabet: 4, seed: 2)
        trie.insert(a[...])
        trie.insert(b[...])
        trie.remove(a[...])
        var onlyB = CountingSuffixTrie(depthLimit: 5)
        onlyB.insert(b[...])
        #expect(trie.liveNodes == onlyB.liveNodes)
        #expect(trie.count[0] == 150)
        trie.remove(b[...])
        #expect(trie.liveNodes == 1)
        #expect(trie.count[0] == 0)
        // Freed nodes are reused.
        trie.insert(a[...])
        var onlyA = CountingSuffixTrie(depthLimit: 5)
        onlyA.insert(a[...])
        #expect(trie.liveNodes == onlyA.liveNodes)
        #expect(trie.token.count <= onlyA.token.count + onlyB.token.count)
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func incrementalIndexMatchesARebuiltOne(seed: UInt64) throws {
        let earlier = randomTokens(300, alphabet: 6, seed: seed &+ 50)
        let all = randomTokens(800, alphabet: 6, seed: seed)
        let budgets = [DraftBudget(maxNodes: 16, maxDepth: 4, maxWidth: 4), DraftBudget(maxNodes: 40, maxDepth: 8, maxWidth: 3),
                       .chain(5)]
        var g = Xoshiro256StarStar(seed: seed &+ 100)
        let incremental = SuffixDrafter(maxPatternLength: 12, maxSpeculationDepth: 8)
        incremental.end(context: earlier, promptCount: 0)
        try incremental.begin(prompt: Array(all[..<50]), sampling: .greedy)
        var length = 50
        var round = 0
        while length < all.count {
            length = min(all.count, length + 1 + Int(g.next() % 4))
            let context = Array(all[..<length])
            let budget = budgets[round % budgets.count]
            round += 1
            let rebuilt = SuffixDrafter(maxPatternLength: 12, maxSpeculationDepth: 8)
            rebuilt.end(context: earlier, promptCount: 0)
            let a = try incremental.draft(context: context, budget: budget).tree
            let b = try rebuilt.draft(context: context, budget: budget).tree
            #expect(a == b, "round \(round), length \(length)")
            #expect(incremental.requestNodeCount == rebuilt.requestNodeCount)
            expectWellFormed(a, within: budget)
            if a != b { return }
        }
        // A context that does not extend the indexed one is re-indexed.
        let other = randomTokens(200, alphabet: 6, seed: seed &+ 7)
        let rebuilt = SuffixDrafter(maxPatternLength: 12, maxSpeculationDepth: 8)
        rebuilt.end(context: earlier, promptCount: 0)
        #expect(try incremental.draft(context: other, budget: budgets[1]).tree == rebuilt.draft(context: other, budget: budgets[1]).tree)
    }

    @Test func confidencesAreInRangeAndBudgetsRespectedOnRandomInput() throws {
        var g = Xoshiro256StarStar(seed: 9)
        let d = SuffixDrafter(maxPatternLength: 16, maxSpeculationDepth: 8, alpha: 4)
        for trial in 0..<50 {
            let context = randomTokens(40 + trial * 5, alphabet: 3 + trial % 5, seed: UInt64(trial))
            let budget = DraftBudget(maxNodes: 1 + Int(g.next() % 30), maxDepth: 1 + Int(g.next() % 8),
                                     maxWidth: 1 + Int(g.next() % 4))
            try d.begin(prompt: context, sampling: .greedy)
            let tree = try d.draft(context: context, budget: budget).tree
            #expect(!tree.isEmpty)
            expectWellFormed(tree, within: budget)
            d.end(context: context, promptCount: context.count / 2)
        }
    }

    /// Prints the cost of a draft call; no assertion on time (benchmarks never fail unit tests).
    @Test func benchmarkDraftCall() throws {
        let context = benchmarkContext(seed: 42)
        let d = SuffixDrafter()
        // A global index holding earlier requests with the same phrase bank.
        let earlier = benchmarkContext(seed: 43)
        for chunk in stride(from: 0, to: 4000, by: 1000) { d.end(context: Array(earlier[chunk..<(chunk + 1000)]), promptCount: 0) }
        let budget = DraftBudget(maxNodes: 32, maxDepth: 8, maxWidth: 4)
        let clock = ContinuousClock()
        let begin = try clock.measure { try d.begin(prompt: Array(context[..<3000]), sampling: .greedy) }
        var nodes = 0
        let calls = 1000
        var grown = Array(context[..<3000])
        let elapsed = try clock.measure {
            for i in 0..<calls {
                grown.append(context[3000 + i])
                nodes += try d.draft(context: grown, budget: budget).tree.count
            }
        }
        print("SuffixDrafter: \(microseconds(elapsed) / Double(calls)) µs per draft call, context 3 000–4 000 tokens, "
              + "\(Double(nodes) / Double(calls)) nodes per tree")
        print("SuffixDrafter: \(microseconds(begin)) µs to index a 3 000-token prompt; request index \(d.requestNodeCount) "
              + "nodes, global index \(d.globalNodeCount) nodes for \(d.globalTokenCount) tokens")
    }
}
