@testable import ArborEngine
import ArborModels
import ArborTestSupport
import Testing

@Suite("Plain generation on a tiny model")
struct GenerationTests {
    /// Load a tiny Qwen2-shaped model with its byte-level tokenizer.
    func withBundle<T>(_ body: (ModelBundle) throws -> T) throws -> T {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            return try body(try ModelBundle.load(path: path, threads: 2))
        }
    }

    /// Greedy decoding by hand: argmax of a full forward over the whole sequence each step.
    func naiveGreedy(_ model: any LanguageModel, prompt: [Int32], count: Int) throws -> [Int32] {
        var seq = prompt
        for _ in 0..<count {
            let logits = try model.forward(.sequential(seq, startingAt: 0, lastLogitsOnly: true), cache: model.makeCache(capacity: 64))
            let row = Array(logits.row(0))
            seq.append(Int32(row.indices.max { row[$0] < row[$1] }!))
        }
        return Array(seq[prompt.count...])
    }

    @Test("Greedy generation with a KV cache equals recomputing from scratch each step")
    func greedyMatchesNaive() throws {
        try withBundle { b in
            let prompt = b.promptTokens("the cat in the hat")
            let g = TextGenerator(model: b.model, tokenizer: b.tokenizer)
            let r = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 10, stopAtEndOfText: false))
            #expect(r.tokens == (try naiveGreedy(b.model, prompt: prompt, count: 10)))
            #expect(r.finishReason == .length)
            #expect(r.stats.promptTokens == prompt.count && r.stats.generatedTokens == 10)
        }
    }

    @Test("Streamed pieces concatenate to the final text; seeded sampling is reproducible")
    func streamingAndSeeds() throws {
        try withBundle { b in
            let prompt = b.promptTokens("hello")
            let g = TextGenerator(model: b.model, tokenizer: b.tokenizer)
            var sampling = SamplingParameters(temperature: 1.0, topK: 0, topP: 0.9, minP: 0, seed: 7)
            var pieces = ""
            let a = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 16, sampling: sampling, stopAtEndOfText: false)) {
                pieces += $0
                return true
            }
            #expect(pieces == a.text)
            #expect(a.text == b.tokenizer.decode(a.tokens))
            let again = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 16, sampling: sampling, stopAtEndOfText: false))
            #expect(again.tokens == a.tokens)
            sampling.seed = 8
            let other = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 16, sampling: sampling, stopAtEndOfText: false))
            #expect(other.tokens != a.tokens)
        }
    }

    @Test("Stop strings cut the text before them; end-of-text stops without being emitted")
    func stopping() throws {
        try withBundle { b in
            let prompt = b.promptTokens("the")
            let g = TextGenerator(model: b.model, tokenizer: b.tokenizer)
            let free = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 12, stopAtEndOfText: false))
            // Stop at a piece of text that the free run produced after its first few characters.
            let chars = Array(free.text)
            try #require(chars.count >= 4)
            let stop = String(chars[2..<4])
            let cut = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 12, stopStrings: [stop], stopAtEndOfText: false))
            #expect(cut.finishReason == .stop)
            #expect(!cut.text.contains(stop))
            #expect(free.text.hasPrefix(cut.text))

            // Make the first generated token an end-of-generation token: generation stops at once.
            let first = free.tokens[0]
            if b.tokenizer.endOfGenerationTokens.contains(first) {
                let r = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 12))
                #expect(r.tokens.isEmpty && r.finishReason == .endOfText)
            }
        }
    }

    @Test("Streamed pieces add up to the returned text, stop strings included: a partial stop string is held back")
    func streamedTextEqualsReturnedText() throws {
        try withBundle { b in
            let g = TextGenerator(model: b.model, tokenizer: b.tokenizer)
            let prompt = b.promptTokens("the cat in the hat")
            let free = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 16, stopAtEndOfText: false))
            let chars = Array(free.text)
            try #require(chars.count >= 8)
            // Stops that occur (short and long, early and late), that never occur, and prefixes of
            // the text's tail (held back, then released at the end).
            var stops = [[String(chars[1..<3])], [String(chars[4..<8])], ["\u{1}never"], [String(chars.suffix(2)) + "zzz"]]
            stops.append([String(chars[5..<7]), String(chars[2..<6])])
            for stop in stops {
                var streamed = ""
                let r = try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 16, stopStrings: stop, stopAtEndOfText: false),
                                       onPiece: { streamed += $0.text; return true })
                #expect(streamed == r.text, "stops \(stop)")
                for s in stop { #expect(!r.text.contains(s)) }
            }
        }
    }

    @Test("partialStop: the longest tail of the text that begins a stop string")
    func partialStop() {
        #expect(OutputStream.partialStop(at: "hello wor", stops: ["world"]) == 3)
        #expect(OutputStream.partialStop(at: "hello", stops: ["world"]) == 0)
        #expect(OutputStream.partialStop(at: "ab\n", stops: ["\n\n", "b\nc"]) == 2)
        #expect(OutputStream.partialStop(at: "x", stops: [""]) == 0)
        // A multi-byte character: the tail starts on its first byte.
        #expect(OutputStream.partialStop(at: "caf\u{E9}", stops: ["\u{E9}t\u{E9}"]) == 2)
    }

    @Test("Errors: empty prompt, too long, bad sampling parameters")
    func errors() throws {
        try withBundle { b in
            let g = TextGenerator(model: b.model, tokenizer: b.tokenizer)
            #expect(throws: GenerationError.emptyPrompt) { try g.generate(promptTokens: [], parameters: GenerationParameters()) }
            #expect(throws: GenerationError.self) { try g.generate(promptTokens: [1], parameters: GenerationParameters(maxTokens: 10_000)) }
            #expect(throws: SamplingParametersError.self) {
                try g.generate(promptTokens: [1], parameters: GenerationParameters(sampling: SamplingParameters(temperature: -1)))
            }
        }
    }
}
