import ArborGGUF
import ArborTestSupport
import ArborTokenizers
import Foundation
import Testing

/// Exact agreement with the reference engine (xllamacpp) on the committed corpus, one suite
/// per model file; a suite is skipped when its model is not in the models directory.
enum ReferenceChecks {
    /// Every corpus string, with (add_special, parse_special) = (false, false) and (true, true).
    static func encode(_ alias: String) throws {
        let fixture = try Fixtures.load(fixtureOfModel[alias]!, as: TokenFixture.self)
        let tokenizer = try ModelTokenizers.get(alias)
        #expect(fixture.cases.count >= 200)
        var plainPass = 0, specialPass = 0, failures: [String] = []
        for c in fixture.cases {
            let plain = tokenizer.encode(c.text, addSpecial: false, parseSpecial: false)
            if plain == c.plain { plainPass += 1 } else {
                failures.append("plain \(c.text.debugDescription.prefix(120)): got \(plain.prefix(40)) want \(c.plain.prefix(40))")
            }
            let special = tokenizer.encode(c.text, addSpecial: true, parseSpecial: true)
            if special == c.special { specialPass += 1 } else {
                failures.append("special \(c.text.debugDescription.prefix(120)): got \(special.prefix(40)) want \(c.special.prefix(40))")
            }
        }
        print("[\(alias)] plain \(plainPass)/\(fixture.cases.count), special \(specialPass)/\(fixture.cases.count) match \(fixture.reference)")
        for f in failures.prefix(25) { Issue.record(Comment(rawValue: "[\(alias)] \(f)")) }
        #expect(failures.isEmpty, "\(failures.count) mismatches")
    }

    /// decode(encode(s)) == s (byte for byte) wherever the reference's detokenizer round-trips.
    static func roundTrip(_ alias: String) throws {
        let fixture = try Fixtures.load(fixtureOfModel[alias]!, as: TokenFixture.self)
        let tokenizer = try ModelTokenizers.get(alias)
        var checked = 0
        for c in fixture.cases where c.roundtrip {
            let text = tokenizer.decode(tokenizer.encode(c.text, addSpecial: false, parseSpecial: false))
            #expect(utf8Equal(text, c.text), "[\(alias)] \(c.text.debugDescription.prefix(80)) decoded as \(text.debugDescription.prefix(80))")
            checked += 1
        }
        #expect(checked >= 200)
    }

    /// BOS, EOS and the end-of-generation set as the reference's load log lists them.
    static func specialTokens(_ alias: String) throws {
        let fixture = try Fixtures.load(fixtureOfModel[alias]!, as: TokenFixture.self)
        let tokenizer = try ModelTokenizers.get(alias)
        #expect(tokenizer.bosToken == fixture.bos)
        #expect(tokenizer.eosToken == fixture.eos)
        #expect(tokenizer.endOfGenerationTokens == Set(fixture.eog))
    }
}

@Suite("Reference ids: smollm2-135m (gpt2/smollm)",
       .enabled(if: ModelFiles.available(ModelFiles.smollm2), "smollm2-135m.gguf is not in the models directory"))
struct SmolLM2ReferenceTests {
    let alias = ModelFiles.smollm2
    @Test func encodeMatchesReference() throws { try ReferenceChecks.encode(alias) }
    @Test func roundTrip() throws { try ReferenceChecks.roundTrip(alias) }
    @Test func specialTokens() throws {
        try ReferenceChecks.specialTokens(alias)
        let t = try ModelTokenizers.get(alias)
        #expect(!t.addBOS && t.endOfGenerationTokens == [0, 2, 4])  // <|endoftext|>, <|im_end|>, <reponame>
    }
}

@Suite("Reference ids: qwen2.5-coder-0.5b (gpt2/qwen2)",
       .enabled(if: ModelFiles.available(ModelFiles.qwenDraft), "qwen2.5-coder-0.5b.gguf is not in the models directory"))
struct QwenDraftReferenceTests {
    let alias = ModelFiles.qwenDraft
    @Test func encodeMatchesReference() throws { try ReferenceChecks.encode(alias) }
    @Test func roundTrip() throws { try ReferenceChecks.roundTrip(alias) }
    @Test func specialTokens() throws {
        try ReferenceChecks.specialTokens(alias)
        let t = try ModelTokenizers.get(alias)
        #expect(!t.addBOS)
        #expect(t.encode("<|im_start|>user", addSpecial: true, parseSpecial: true).first == 151644)
    }
}

@Suite("Reference ids: qwen2.5-coder-1.5b (gpt2/qwen2)",
       .enabled(if: ModelFiles.available(ModelFiles.qwenTarget), "qwen2.5-coder-1.5b.gguf is not in the models directory"))
struct QwenTargetReferenceTests {
    let alias = ModelFiles.qwenTarget
    @Test func encodeMatchesReference() throws { try ReferenceChecks.encode(alias) }
    @Test func roundTrip() throws { try ReferenceChecks.roundTrip(alias) }
    @Test func specialTokens() throws { try ReferenceChecks.specialTokens(alias) }
}

@Suite("Reference ids: gemma3-270m (llama/SentencePiece)",
       .enabled(if: ModelFiles.available(ModelFiles.gemma3), "gemma3-270m.gguf is not in the models directory"))
struct Gemma3ReferenceTests {
    let alias = ModelFiles.gemma3
    @Test func encodeMatchesReference() throws { try ReferenceChecks.encode(alias) }
    @Test func roundTrip() throws { try ReferenceChecks.roundTrip(alias) }
    @Test func specialTokens() throws {
        try ReferenceChecks.specialTokens(alias)
        let t = try ModelTokenizers.get(alias)
        #expect(t.addBOS)
        #expect(t.encode("Hi", addSpecial: true, parseSpecial: true) == [2, 10979])
        #expect(t.endOfGenerationTokens.contains(106))  // <end_of_turn>
    }
}
