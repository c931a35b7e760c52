import ArborEngine
import ArborProfiles
import ArborTestSupport
import Foundation
import Testing
@testable import ArborRuntime

@Suite("Drafter router (--drafter auto)")
struct RouterTests {
    @Test("prompt features: repetition, code, length make the bucket")
    func features() {
        let repeating = PromptFeatures(tokens: Array(repeating: [1, 2, 3, 4], count: 10).flatMap { $0 }, text: "x")
        #expect(repeating.repetition > 0.8 && repeating.bucket.hasPrefix("repeats-"))
        let fresh = PromptFeatures(tokens: (0..<300).map { Int32($0) }, text: "Write a short story about a lighthouse keeper.")
        #expect(fresh.repetition == 0 && fresh.bucket == "fresh-prose-long")
        let code = PromptFeatures(tokens: [1, 2, 3], text: "```python\ndef f(x):\n    return x\n```")
        #expect(code.bucket == "fresh-code-short")
    }

    @Test("untried drafters first (the likeliest first), then the best measured; new buckets start from the overall means; statistics persist")
    func bandit() throws {
        try TemporaryDirectory.with { dir in
            let db = dir.file("p.sqlite").path
            let store = try ProfileStore(path: db)
            let candidates: [DrafterChoice] = [.ngram, .suffix, .model("d"), .none]
            let router = DrafterRouter(candidates: candidates, store: store, scope: "s")
            let prose = PromptFeatures(tokens: (0..<20).map { Int32($0) }, text: "Tell me about the sea.")
            // Fresh prose: the draft model is tried first, then the others in order.
            var tried: [DrafterChoice] = []
            let speed: [DrafterChoice: Double] = [.ngram: 10, .suffix: 11, .model("d"): 20, .none: 12]
            for _ in 0..<4 {
                let c = router.choose(prose)
                tried.append(c)
                router.record(c, features: prose, tokensPerSecond: speed[c]!)
            }
            #expect(tried == [.model("d"), .ngram, .suffix, .none])
            // Then it exploits the fastest, with the others' bonus shrinking as it learns.
            var picks: [DrafterChoice: Int] = [:]
            for _ in 0..<40 {
                let c = router.choose(prose)
                picks[c, default: 0] += 1
                router.record(c, features: prose, tokensPerSecond: speed[c]!)
            }
            #expect(picks[.model("d"), default: 0] >= 36)
            // A new bucket starts from what was learned overall: the fastest drafter first, not every one again.
            let code = PromptFeatures(tokens: [1, 2, 3], text: "```python\ndef f(x):\n    return x\n```")
            #expect(code.bucket != prose.bucket && router.choose(code) == .model("d"))
            // Another process, the same database: it starts from what was learned.
            let again = DrafterRouter(candidates: candidates, store: try ProfileStore(path: db), scope: "s")
            #expect(again.statistics(bucket: prose.bucket)[DrafterChoice.model("d").description]?.count == picks[.model("d"), default: 0] + 1)
            #expect(again.choose(prose) == .model("d"))
            // Another scope (another target) knows nothing.
            let other = DrafterRouter(candidates: candidates, store: try ProfileStore(path: db), scope: "t")
            #expect(other.statistics(bucket: prose.bucket).isEmpty)
        }
    }

    @Test("auto through the runtime: each request routed, greedy output unchanged, the pick recorded")
    func runtimeAuto() throws {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            let runtime = try Runtime(options: RuntimeOptions(model: path, drafter: .auto, threads: 1,
                                                              profileDatabase: dir.file("p.sqlite").path),
                                      resolveModel: { $0 })
            let prompt = runtime.promptTokens("the cat in the hat sat on the mat; the cat in the hat")
            let parameters = GenerationParameters(maxTokens: 16, sampling: .greedy, stopAtEndOfText: false)
            let plain = try runtime.generate(prompt: prompt, parameters: parameters, settings: RequestSettings(drafter: DrafterChoice.none))
            var used: [String] = []
            for _ in 0..<4 {
                let r = try runtime.generate(prompt: prompt, parameters: parameters)
                #expect(r.tokens == plain.tokens)
                used.append(r.stats.speculative?.drafter ?? "none")
            }
            // Four requests, two candidates (the suffix tree and plain decoding; no draft model).
            let bucket = PromptFeatures(tokens: prompt, text: runtime.tokenizer.decode(prompt)).bucket
            let stats = runtime.router.statistics(bucket: bucket)
            #expect(stats.values.reduce(0) { $0 + $1.count } >= 4)
            #expect(Set(stats.keys) == ["suffix", "none"])
            // A routed request keeps its acceptance calibration per bucket (beside the drafter's own).
            let store = try ProfileStore(path: dir.file("p.sqlite").path)
            let drafters = Set(try store.list().map(\.key.drafter))
            #expect(used.contains("suffix") == drafters.contains("suffix#\(bucket)"))
            #expect(throws: RuntimeError.unknownDrafter("auto+suffix")) { try DrafterChoice(parsing: "auto+suffix") }
            #expect(try DrafterChoice(parsing: "auto") == .auto)
        }
    }

    @Test("only a pick that explores is watched for a switch: the best estimate's alternatives are all estimated lower")
    func exploreOnlySwitch() {
        let router = DrafterRouter(candidates: [.suffix, .model("d"), .none], store: nil, scope: "s")
        let prose = PromptFeatures(tokens: (0..<20).map { Int32($0) }, text: "Tell me about the sea.")
        for (c, r) in [(DrafterChoice.suffix, 30.0), (.suffix, 34), (.model("d"), 20), (.none, 17)] { router.record(c, features: prose, tokensPerSecond: r) }
        #expect(abs(router.estimate(.suffix, prose) - 32) < 1e-9)
        let forBest = try! #require(router.bestAlternative(to: .suffix, prose))
        #expect(forBest.choice == .model("d") && forBest.tokensPerSecond < router.estimate(.suffix, prose))
        let forExplorer = try! #require(router.bestAlternative(to: .none, prose))
        #expect(forExplorer.choice == .suffix && forExplorer.tokensPerSecond > router.estimate(.none, prose))
        #expect(router.estimate(.model("x"), prose) == 0)
    }

    @Test("a routed pick that lags switches once to the alternative, output unchanged; one that keeps up stays")
    func routedSwitch() throws {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            let bundle = try ModelBundle.load(path: path, threads: 1)
            let prompt = bundle.promptTokens("the cat in the hat sat on the mat; the cat in the hat sat on the mat")
            let parameters = GenerationParameters(maxTokens: 48, sampling: .greedy, stopAtEndOfText: false)
            let plain = try TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer).generate(promptTokens: prompt, parameters: parameters)
            for (rate, expectSwitch) in [(Double.greatestFiniteMagnitude, true), (0, false)] {
                // Plain decoding picked; the suffix tree is "known" to be infinitely fast (or not at all).
                let routed = RoutedDrafter(primary: nil, fallback: SuffixDrafter(), fallbackChoice: .suffix, fallbackRate: rate)
                let r = try SpeculativeGenerator(verifier: LocalVerifier(model: bundle.model), drafter: routed, tokenizer: bundle.tokenizer)
                    .generate(promptTokens: prompt, parameters: parameters)
                #expect(r.tokens == plain.tokens)
                #expect(routed.switched == expectSwitch)
                #expect((routed.rateBeforeSwitch != nil) == expectSwitch)
                #expect(r.stats.speculative?.drafter == "none")
                // Switched: the suffix tree drafted the rest; not switched: nothing was drafted.
                #expect(((r.stats.speculative?.draftedNodes ?? 0) > 0) == expectSwitch)
            }
        }
    }
}
