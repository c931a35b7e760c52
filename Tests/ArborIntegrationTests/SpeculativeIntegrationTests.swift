import ArborEngine
import ArborModels
import ArborTestSupport
import Testing

/// Greedy speculative decoding on the real pair (Qwen2.5-Coder-0.5B drafting for 1.5B) must give
/// plain greedy's tokens exactly, for every drafter, chains and trees, fixed and adaptive.
@Suite("Speculative decoding on the real Qwen pair",
       .enabled(if: ModelFiles.available(ModelFiles.qwenTarget) && ModelFiles.available(ModelFiles.qwenDraft)))
struct SpeculativeIntegrationTests {
    static let requests = [
        "Write a Python function `fib(n)` that returns the n-th Fibonacci number iteratively, with a docstring.",
        "Complete the following Python function.\n\n```python\ndef count_vowels(s: str) -> int:\n    \"\"\"Return the number of vowels in s.\n    >>> count_vowels('hello')\n    2\n    \"\"\"\n```",
    ]

    @Test("Every drafter reproduces plain greedy output token for token")
    func greedyLossless() throws {
        let target = try Loaded.bundle(ModelFiles.qwenTarget), draft = try Loaded.bundle(ModelFiles.qwenDraft)
        #expect(target.tokenizer.vocabularyFingerprint == draft.tokenizer.vocabularyFingerprint)
        let p = GenerationParameters(maxTokens: 48)
        let suffix = SuffixDrafter()  // shared across requests, as in a server process
        for request in Self.requests {
            let prompt = try target.chatTokens([ChatMessage(role: "user", content: request)])
            let plain = try TextGenerator(model: target.model, tokenizer: target.tokenizer).generate(promptTokens: prompt, parameters: p)
            func model() throws -> any Drafter {
                try ModelDrafter(model: draft.model, tokenizer: draft.tokenizer, name: "0.5b", targetTokenizer: target.tokenizer, targetName: "1.5b")
            }
            let cases: [(String, any Drafter, SpeculationConfiguration)] = [
                ("ngram tree", NGramDrafter(), SpeculationConfiguration(budget: DraftBudget(maxNodes: 8, maxDepth: 4, maxWidth: 3), adaptive: false)),
                ("suffix adaptive", suffix, SpeculationConfiguration()),
                ("model chain", try model(), SpeculationConfiguration(budget: .chain(4), adaptive: false)),
                ("model tree", try model(), SpeculationConfiguration(budget: DraftBudget(maxNodes: 8, maxDepth: 4, maxWidth: 2), adaptive: false)),
            ]
            for (name, drafter, config) in cases {
                let r = try SpeculativeGenerator(verifier: LocalVerifier(model: target.model), drafter: drafter,
                                                 tokenizer: target.tokenizer, configuration: config)
                    .generate(promptTokens: prompt, parameters: p)
                #expect(r.tokens == plain.tokens, "\(name): diverged at \(zip(r.tokens, plain.tokens).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(r.tokens.count, plain.tokens.count))")
                #expect(r.text == plain.text && r.finishReason == plain.finishReason)
                let s = try #require(r.stats.speculative)
                if name.hasPrefix("model") {
                    // The 0.5B model agrees with the 1.5B model most of the time on code.
                    #expect(s.acceptedNodes > 0 && s.meanAcceptedLength > 1.5, "\(name): \(s.meanAcceptedLength) tokens per round")
                }
            }
        }
    }

    @Test("Drafting across vocabularies (SmolLM2-135M and Gemma 3 270M for the Qwen 1.5B) reproduces plain greedy",
          .enabled(if: ModelFiles.available(ModelFiles.smollm2) && ModelFiles.available(ModelFiles.gemma3)))
    func crossVocabularyLossless() throws {
        let target = try Loaded.bundle(ModelFiles.qwenTarget)
        let p = GenerationParameters(maxTokens: 48)
        for alias in [ModelFiles.smollm2, ModelFiles.gemma3] {
            let draft = try Loaded.bundle(alias)
            #expect(target.tokenizer.vocabularyFingerprint != draft.tokenizer.vocabularyFingerprint)
            var accepted = 0
            for request in Self.requests {
                let prompt = try target.chatTokens([ChatMessage(role: "user", content: request)])
                let plain = try TextGenerator(model: target.model, tokenizer: target.tokenizer).generate(promptTokens: prompt, parameters: p)
                let drafter = CrossVocabularyDrafter(model: draft.model, tokenizer: draft.tokenizer, name: alias, targetTokenizer: target.tokenizer)
                let r = try SpeculativeGenerator(verifier: LocalVerifier(model: target.model), drafter: drafter, tokenizer: target.tokenizer,
                                                 configuration: SpeculationConfiguration(budget: .chain(4), adaptive: false))
                    .generate(promptTokens: prompt, parameters: p)
                #expect(r.tokens == plain.tokens, "\(alias): diverged at \(zip(r.tokens, plain.tokens).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(r.tokens.count, plain.tokens.count))")
                #expect(r.text == plain.text && r.finishReason == plain.finishReason)
                accepted += r.stats.speculative?.acceptedNodes ?? 0
            }
            // A small model of another family still agrees with the target on much of the code.
            #expect(accepted > 10, "\(alias): \(accepted) drafted tokens accepted")
        }
    }
}
