import ArborEngine
import ArborModels
import ArborTestSupport
import ArborTokenizers
import Testing

@testable import ArborEngine

@Suite("Token trees")
struct TokenTreeTests {
    @Test func parentsArrayRoundTripsAndValidates() throws {
        let t = try TokenTree(tokens: [5, 6, 7, 8], parents: [-1, 0, 0, -1])
        #expect(t.depths == [1, 2, 2, 1])
        #expect(t.children(of: -1) == [0, 3] && t.children(of: 0) == [1, 2])
        #expect(t.path(to: 2) == [0, 2] && t.pathTokens(to: 2) == [5, 7])
        #expect(t.maxDepth == 2 && t.maxWidth == 2)
        #expect(throws: TokenTreeError.notATree(node: 1, parent: 1)) { try TokenTree(tokens: [1, 2], parents: [-1, 1]) }
        #expect(throws: TokenTreeError.notATree(node: 0, parent: -2)) { try TokenTree(tokens: [1], parents: [-2]) }
        #expect(throws: TokenTreeError.self) { try TokenTree(tokens: [1, 2], parents: [-1]) }
        let sub = t.subtree(keeping: [0, 2, 3])
        #expect(sub.tree.tokens == [5, 7, 8] && sub.tree.parents == [-1, 0, -1] && sub.oldIndices == [0, 2, 3])
    }

    @Test func pathConfidenceMultiplies() {
        var t = TokenTree()
        let a = t.append(token: 1, parent: -1, confidence: 0.5)
        let b = t.append(token: 2, parent: a, confidence: 0.5)
        #expect(t.pathConfidence(of: b) == 0.25)
    }
}

@Suite("Speculative generation on tiny models")
struct SpeculativeGenerationTests {
    static let prompts = ["the cat in the hat", "in a hole in the ground", "a", "then the other thing"]

    func withBundles<T>(_ arch: TinyModel.Architecture = .qwen2, draftSeed: UInt64 = 7, _ body: (ModelBundle, ModelBundle) throws -> T) throws -> T {
        try TemporaryDirectory.with { dir in
            var target = TinyModel(arch)
            target.contextLength = 512
            var draft = target
            draft.seed = draftSeed
            let t = try ModelBundle.load(path: try target.write(to: dir), threads: 2)
            let d = try ModelBundle.load(path: try draft.write(to: dir), threads: 2)
            return try body(t, d)
        }
    }

    func plain(_ b: ModelBundle, _ prompt: [Int32], _ p: GenerationParameters) throws -> GenerationResult {
        try TextGenerator(model: b.model, tokenizer: b.tokenizer).generate(promptTokens: prompt, parameters: p)
    }

    func speculative(_ b: ModelBundle, _ drafter: (any Drafter)?, _ prompt: [Int32], _ p: GenerationParameters,
                     _ config: SpeculationConfiguration = SpeculationConfiguration(adaptive: false)) throws -> GenerationResult {
        try SpeculativeGenerator(verifier: LocalVerifier(model: b.model), drafter: drafter, tokenizer: b.tokenizer, configuration: config)
            .generate(promptTokens: prompt, parameters: p)
    }

    /// The plain greedy continuation, as an oracle for drafters.
    func oracle(_ b: ModelBundle, prompt: [Int32], count: Int) throws -> ([Int32]) -> Int32? {
        let full = prompt + (try plain(b, prompt, GenerationParameters(maxTokens: count, stopAtEndOfText: false)).tokens)
        return { context in
            guard context.count < full.count, Array(full[0..<context.count]) == context else { return nil }
            return full[context.count]
        }
    }

    @Test("Greedy: no drafter, random trees, same-model and other-model drafters all reproduce plain greedy",
          arguments: TinyModel.Architecture.allCases)
    func greedyIsLossless(arch: TinyModel.Architecture) throws {
        try withBundles(arch) { t, d in
            for (i, text) in Self.prompts.enumerated() {
                let prompt = t.promptTokens(text)
                let p = GenerationParameters(maxTokens: 40, stopAtEndOfText: false)
                let expected = try plain(t, prompt, p)
                #expect(try speculative(t, nil, prompt, p).tokens == expected.tokens)
                let oracle = try oracle(t, prompt: prompt, count: 60)
                let random = RandomTreeDrafter(seed: UInt64(i), vocabulary: t.tokenizer.vocabularySize, oracle: oracle)
                let r = try speculative(t, random, prompt, p)
                #expect(r.tokens == expected.tokens, "random trees, prompt \(i)")
                #expect(r.text == expected.text)
                let stats = try #require(r.stats.speculative)
                #expect(stats.acceptedNodes > 0 && stats.acceptedNodes < stats.draftedNodes)
                #expect(stats.emittedTokens == 40 && stats.rounds < 40)
                // Adaptive sizing changes which trees are sent, never the output.
                let adaptive = RandomTreeDrafter(seed: UInt64(i), vocabulary: t.tokenizer.vocabularySize, oracle: oracle)
                #expect(try speculative(t, adaptive, prompt, p, SpeculationConfiguration()).tokens == expected.tokens)
                // Prompt lookup and suffix drafters (their trees come from repeats in the context).
                for free in [NGramDrafter() as any Drafter, SuffixDrafter()] {
                    #expect(try speculative(t, free, prompt, p).tokens == expected.tokens, "\(free.name), prompt \(i)")
                }
                for width in [1, 3] {
                    let budget = DraftBudget(maxNodes: 8, maxDepth: 4, maxWidth: width)
                    let other = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "draft", targetTokenizer: t.tokenizer, targetName: "target")
                    let o = try speculative(t, other, prompt, p, SpeculationConfiguration(budget: budget, adaptive: false))
                    #expect(o.tokens == expected.tokens, "other-model drafter width \(width), prompt \(i)")
                }
            }
        }
    }

    @Test("Greedy: a draft model of another vocabulary (drafting through text) reproduces plain greedy",
          arguments: TinyModel.Architecture.allCases)
    func crossVocabularyIsLossless(arch: TinyModel.Architecture) throws {
        try TemporaryDirectory.with { dir in
            var target = TinyModel(arch)
            target.contextLength = 512
            var draft = TinyModel(.llama)
            draft.vocabularyKind = .alternate
            draft.contextLength = 512
            draft.seed = 5
            let t = try ModelBundle.load(path: try target.write(to: dir), threads: 2)
            let d = try ModelBundle.load(path: try draft.write(to: dir), threads: 2)
            #expect(t.tokenizer.vocabularyFingerprint != d.tokenizer.vocabularyFingerprint)
            #expect(t.tokenizer.encode("the cat", addSpecial: false, parseSpecial: false)
                    != d.tokenizer.encode("the cat", addSpecial: false, parseSpecial: false))
            for (i, text) in Self.prompts.enumerated() {
                let prompt = t.promptTokens(text)
                for sampling in [SamplingParameters.greedy] {
                    let p = GenerationParameters(maxTokens: 40, sampling: sampling, stopAtEndOfText: false)
                    let expected = try plain(t, prompt, p)
                    for config in [SpeculationConfiguration(budget: .chain(4), adaptive: false), SpeculationConfiguration()] {
                        let cross = CrossVocabularyDrafter(model: d.model, tokenizer: d.tokenizer, name: "alt", targetTokenizer: t.tokenizer)
                        let r = try speculative(t, cross, prompt, p, config)
                        #expect(r.tokens == expected.tokens, "cross-vocabulary \(arch), prompt \(i), adaptive \(config.adaptive)")
                        #expect(r.text == expected.text)
                        if !config.adaptive {
                            let s = try #require(r.stats.speculative)
                            #expect(s.draftedNodes > 0 && s.draftSteps > 0, "\(s)")
                        }
                    }
                }
            }
        }
    }

    @Test("A cross-vocabulary draft model with a shorter context stops drafting at its end instead of failing")
    func crossVocabularyDraftContextEnds() throws {
        try TemporaryDirectory.with { dir in
            var target = TinyModel(.qwen2)
            target.contextLength = 512
            var draft = TinyModel(.llama)
            draft.vocabularyKind = .alternate
            draft.contextLength = 48
            let t = try ModelBundle.load(path: try target.write(to: dir), threads: 2)
            let d = try ModelBundle.load(path: try draft.write(to: dir), threads: 2)
            let prompt = t.promptTokens("the cat in the hat")
            let p = GenerationParameters(maxTokens: 120, stopAtEndOfText: false)
            let cross = CrossVocabularyDrafter(model: d.model, tokenizer: d.tokenizer, name: "short", targetTokenizer: t.tokenizer)
            let r = try speculative(t, cross, prompt, p, SpeculationConfiguration(budget: .chain(4), adaptive: false))
            #expect(r.tokens == (try plain(t, prompt, p)).tokens)
            let s = try #require(r.stats.speculative)
            #expect(s.draftedNodes > 0 && s.plainRounds > 0, "\(s)")
        }
    }

    @Test("VocabTrim: a trimmed head scores the kept tokens exactly as the whole head, the rest -inf; drafting with it stays lossless")
    func trimmedHead() throws {
        try withBundles(.qwen2) { t, d in
            let kept: [Int32] = [3, 40, 41, 104, 116, 200, 256, 257, Int32(t.tokenizer.vocabularySize - 1)]
            let trimmed = try d.model.trimmingOutput(to: kept)
            #expect(trimmed.outputTokens.map(Set.init) == Set(kept))
            let tokens = d.promptTokens("the cat in the hat")
            let full = try d.model.forward(.sequential(tokens, startingAt: 0), cache: d.model.makeCache(capacity: 64))
            let cut = try trimmed.forward(.sequential(tokens, startingAt: 0), cache: trimmed.makeCache(capacity: 64))
            for r in 0..<tokens.count {
                let a = full.row(r), b = cut.row(r)
                for (i, x) in b.enumerated() {
                    if kept.contains(Int32(i)) { #expect(x == a[a.startIndex + i]) } else { #expect(x == -.infinity) }
                }
            }
            #expect(throws: ModelError.self) { try d.model.trimmingOutput(to: [Int32(t.tokenizer.vocabularySize)]) }
            // Tokens included for a request (its prompt's) are scored too, exactly.
            trimmed.includeOutputTokens([50, 51, 3])
            let more = try trimmed.forward(.sequential(tokens, startingAt: 0), cache: trimmed.makeCache(capacity: 64))
            let a0 = full.row(0), m0 = more.row(0)
            #expect(m0[m0.startIndex + 50] == a0[a0.startIndex + 50] && m0[m0.startIndex + 51] == a0[a0.startIndex + 51])
            #expect(m0[m0.startIndex + 3] == a0[a0.startIndex + 3] && m0[m0.startIndex + 52] == -.infinity)
            trimmed.includeOutputTokens([])
            let prompt = t.promptTokens("in a hole in the ground")
            let p = GenerationParameters(maxTokens: 30, stopAtEndOfText: false)
            let drafter = try ModelDrafter(model: trimmed, tokenizer: d.tokenizer, name: "trimmed", targetTokenizer: t.tokenizer, targetName: "target")
            let r = try speculative(t, drafter, prompt, p, SpeculationConfiguration(budget: .chain(3), adaptive: false))
            #expect(r.tokens == (try plain(t, prompt, p)).tokens)
        }
    }

    @Test("Composite drafter: merged trees share prefixes, fit the budget, skip the model when the free tree suffices; lossless")
    func compositeDrafter() throws {
        var a = TokenTree(chain: [1, 2, 3], confidences: [0.9, 0.9, 0.9])
        a.append(token: 7, parent: -1, confidence: 0.05)
        let b = TokenTree(chain: [1, 2, 4], confidences: [0.95, 0.5, 0.5])
        let merged = CompositeDrafter.merge(a, b)
        #expect(merged.tokens == [1, 2, 3, 7, 4] && merged.parents == [-1, 0, 1, -1, 1])
        #expect(merged.confidences[0] == 0.95)  // the higher confidence of a shared node
        let chain = CompositeDrafter.fit(merged, .chain(3))
        #expect(chain.tokens == [1, 2, 3] && chain.maxWidth == 1)
        let small = CompositeDrafter.fit(merged, DraftBudget(maxNodes: 4, maxDepth: 2, maxWidth: 2))
        #expect(small.tokens == [1, 2, 7] && small.maxDepth == 2)

        try withBundles(.qwen2) { t, d in
            for (i, text) in Self.prompts.enumerated() {
                let prompt = t.promptTokens(text + " " + text + " " + text)
                let p = GenerationParameters(maxTokens: 40, stopAtEndOfText: false)
                let model = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "draft", targetTokenizer: t.tokenizer, targetName: "target")
                let composite = CompositeDrafter([model, SuffixDrafter()])
                #expect(composite.name == "suffix+model:draft" && composite.costsTimePerStep)
                let r = try speculative(t, composite, prompt, p, SpeculationConfiguration(budget: DraftBudget(maxNodes: 8, maxDepth: 4, maxWidth: 2), adaptive: false))
                #expect(r.tokens == (try plain(t, prompt, p)).tokens, "prompt \(i)")
                #expect(composite.costlyRounds > 0)
            }
        }
    }

    @Test("A draft model identical to the target has every chain node accepted")
    func identicalDraftIsFullyAccepted() throws {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.llama).write(to: dir)
            let t = try ModelBundle.load(path: path, threads: 2), d = try ModelBundle.load(path: path, threads: 2)
            let prompt = t.promptTokens("the cat in the hat")
            let p = GenerationParameters(maxTokens: 30, stopAtEndOfText: false)
            let drafter = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "same", targetTokenizer: t.tokenizer, targetName: "target")
            let r = try speculative(t, drafter, prompt, p, SpeculationConfiguration(budget: .chain(4), adaptive: false))
            #expect(r.tokens == (try plain(t, prompt, p)).tokens)
            let s = try #require(r.stats.speculative)
            #expect(s.acceptanceRate == 1, "\(s)")
            #expect(s.rounds == 6)  // 5 tokens per round
            // Trees: exactly one node per depth is accepted.
            let tree = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "same", targetTokenizer: t.tokenizer, targetName: "target")
            let rt = try speculative(t, tree, prompt, p, SpeculationConfiguration(budget: DraftBudget(maxNodes: 12, maxDepth: 4, maxWidth: 3), adaptive: false))
            #expect(rt.tokens == r.tokens)
            // The draft's top root is the target's argmax, so every round accepts at least one node.
            let st = try #require(rt.stats.speculative)
            #expect(st.acceptedNodes >= st.rounds - 1, "\(st)")
        }
    }

    @Test("Stop rules end speculative output exactly where plain generation ends")
    func stopsMatchPlain() throws {
        try withBundles { t, _ in
            let prompt = t.promptTokens("the cat in the hat")
            let reference = try plain(t, prompt, GenerationParameters(maxTokens: 40, stopAtEndOfText: false))
            let oracle = try oracle(t, prompt: prompt, count: 80)
            // Max tokens inside a fully accepted tree.
            for n in [1, 2, 7, 13] {
                let p = GenerationParameters(maxTokens: n, stopAtEndOfText: false)
                let r = try speculative(t, RandomTreeDrafter(seed: 3, vocabulary: t.tokenizer.vocabularySize, oracle: oracle), prompt, p)
                #expect(r.tokens == Array(reference.tokens.prefix(n)) && r.finishReason == .length)
            }
            // A stop string drawn from the reference text.
            let text = reference.text
            let stop = String(text.dropFirst(text.count / 2).prefix(3))
            let ps = GenerationParameters(maxTokens: 40, stopStrings: [stop], stopAtEndOfText: false)
            let a = try plain(t, prompt, ps)
            let b = try speculative(t, RandomTreeDrafter(seed: 4, vocabulary: t.tokenizer.vocabularySize, oracle: oracle), prompt, ps)
            #expect(a.finishReason == .stop && b.finishReason == .stop && a.text == b.text && a.tokens == b.tokens)
            // An end-of-generation token: pretend the 10th generated token ends generation.
            let eog = reference.tokens[9]
            let tok = TokenizerOverride(t.tokenizer, endOfGeneration: [eog])
            let pe = GenerationParameters(maxTokens: 40, stopAtEndOfText: true)
            let pa = try TextGenerator(model: t.model, tokenizer: tok).generate(promptTokens: prompt, parameters: pe)
            let sb = try SpeculativeGenerator(verifier: LocalVerifier(model: t.model),
                                              drafter: RandomTreeDrafter(seed: 5, vocabulary: t.tokenizer.vocabularySize, oracle: oracle),
                                              tokenizer: tok, configuration: SpeculationConfiguration(adaptive: false))
                .generate(promptTokens: prompt, parameters: pe)
            #expect(pa.finishReason == .endOfText && sb.finishReason == .endOfText)
            #expect(pa.tokens == sb.tokens && pa.tokens.count <= 9)
            // Ignoring end-of-generation: the token is never produced, in both.
            let pi = GenerationParameters(maxTokens: 30, stopAtEndOfText: false)
            let ia = try TextGenerator(model: t.model, tokenizer: tok).generate(promptTokens: prompt, parameters: pi)
            let ib = try SpeculativeGenerator(verifier: LocalVerifier(model: t.model),
                                              drafter: RandomTreeDrafter(seed: 6, vocabulary: t.tokenizer.vocabularySize, oracle: oracle),
                                              tokenizer: tok, configuration: SpeculationConfiguration(adaptive: false))
                .generate(promptTokens: prompt, parameters: pi)
            #expect(ia.tokens == ib.tokens && !ib.tokens.contains(eog))
        }
    }

    @Test("A draft model of another vocabulary is refused")
    func vocabularyMismatchIsRefused() throws {
        try withBundles { t, d in
            let other = TokenizerOverride(d.tokenizer, bos: .some(7))
            #expect(throws: SpeculativeError.self) {
                try ModelDrafter(model: d.model, tokenizer: other, name: "draft", targetTokenizer: t.tokenizer, targetName: "target")
            }
            #expect(t.tokenizer.vocabularyFingerprint == d.tokenizer.vocabularyFingerprint)
        }
    }

    @Test("Seeded speculative sampling is reproducible")
    func sampledRunsAreReproducible() throws {
        try withBundles { t, d in
            let prompt = t.promptTokens("the cat")
            var s = SamplingParameters(temperature: 0.8, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1, seed: 42)
            s.repetitionLastN = 0
            let p = GenerationParameters(maxTokens: 30, sampling: s, stopAtEndOfText: false)
            func run() throws -> [Int32] {
                let m = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "d", targetTokenizer: t.tokenizer, targetName: "t")
                return try speculative(t, m, prompt, p, SpeculationConfiguration(budget: .chain(3), adaptive: false)).tokens
            }
            let a = try run(), b = try run()
            #expect(a == b && a.count == 30)
        }
    }

    @Test("The adaptive controller stops drafting when drafts are never accepted")
    func controllerFallsBackToPlain() throws {
        try withBundles { t, _ in
            let prompt = t.promptTokens("the cat in the hat")
            let p = GenerationParameters(maxTokens: 60, stopAtEndOfText: false)
            let hopeless = RandomTreeDrafter(seed: 9, vocabulary: t.tokenizer.vocabularySize)
            let r = try speculative(t, hopeless, prompt, p, SpeculationConfiguration())
            #expect(r.tokens == (try plain(t, prompt, p)).tokens)
        }
    }
}

@Suite("Round policy: the tps controller")
struct SpeculationControllerTests {
    /// A round whose target pass costs `ms(b)` and accepts `accepted` nodes of a chain.
    func observe(_ c: RoundPolicy, plan: RoundPlan = RoundPlan(budget: .chain(4)), tree: TokenTree, accepted: Int, ms: (Int) -> Double, draftMs: Double = 0) {
        let b = tree.count + 1
        let result = VerificationResult(acceptedNodes: Array(0..<accepted), nextToken: 0, batchSize: b, targetMilliseconds: ms(b))
        let draft = Draft(tree: tree, cost: DraftCost(milliseconds: draftMs, steps: tree.maxDepth))
        c.observe(RoundRecord(plan: plan, draft: draft, sent: tree, prediction: RoundPrediction(), result: result,
                              use: ResourceUse(), milliseconds: ms(b) + draftMs))
    }

    func select(_ c: RoundPolicy, _ tree: TokenTree) -> TokenTree {
        c.select(Draft(tree: tree), plan: RoundPlan(budget: .chain(4))).tree
    }

    @Test("Costly batches and hopeless drafts: the controller sends nothing (plain rounds, with rare probes)")
    func hopelessDraftsAreDropped() {
        let c = RoundPolicy(configuration: SpeculationConfiguration(budget: .chain(4)), drafterCostsTime: false)
        let cost: (Int) -> Double = { 10 + 6 * Double($0 - 1) }
        var sent = 0
        for _ in 0..<200 {
            let tree = select(c, TokenTree(chain: [1, 2, 3, 4], confidences: [0.9, 0.9, 0.9, 0.9]))
            sent += tree.count
            observe(c, tree: tree, accepted: 0, ms: cost)
        }
        #expect(sent < 40, "sent \(sent) nodes over 200 rounds of never-accepted drafts")
    }

    @Test("Cheap batches and good drafts: the controller sends the chain")
    func goodDraftsAreSent() {
        let c = RoundPolicy(configuration: SpeculationConfiguration(budget: .chain(4)), drafterCostsTime: false)
        let cost: (Int) -> Double = { 10 + 0.5 * Double($0 - 1) }
        var last = 0
        for _ in 0..<50 {
            let tree = select(c, TokenTree(chain: [1, 2, 3, 4], confidences: [0.9, 0.9, 0.9, 0.9]))
            last = tree.count
            observe(c, tree: tree, accepted: tree.count, ms: cost)
        }
        #expect(last == 4)
    }

    @Test("A slow draft model is not used when its steps cost more than they save")
    func slowDraftModelIsSkipped() {
        let c = RoundPolicy(configuration: SpeculationConfiguration(budget: .chain(4)), drafterCostsTime: true)
        let cost: (Int) -> Double = { 10 + 8 * Double($0 - 1) }
        var drafted = 0
        for _ in 0..<100 {
            let plan = c.plan(remaining: 100, room: 100)
            let b = plan.budget
            drafted += b.maxDepth
            let tree = b.maxDepth > 0 ? TokenTree(chain: Array(repeating: 1, count: b.maxDepth), confidences: Array(repeating: 0.5, count: b.maxDepth)) : TokenTree()
            observe(c, plan: plan, tree: tree, accepted: min(1, tree.count), ms: cost, draftMs: 9 * Double(b.maxDepth))
        }
        #expect(drafted < 30, "drafted \(drafted) depth steps")
    }

    @Test("Plans never exceed the verifier's tree limit")
    func respectsTreeLimit() {
        let c = RoundPolicy(configuration: SpeculationConfiguration(budget: DraftBudget(maxNodes: 16, maxDepth: 8, maxWidth: 4), adaptive: false), drafterCostsTime: false)
        let plan = c.plan(remaining: 100, room: 100, maxTreeNodes: 5)
        #expect(plan.budget.maxNodes == 5 && plan.budget.maxDepth == 5)
    }
}
