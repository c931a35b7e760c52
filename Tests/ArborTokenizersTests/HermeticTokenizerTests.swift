import ArborGGUF
@testable import ArborTokenizers
import Testing

/// Tokenizers built from tiny hand-made vocabularies: no model files needed.
@Suite("Byte-level BPE on a tiny vocabulary")
struct TinyBPETests {
    let t: any Tokenizer
    init() throws { t = try makeTokenizer(metadata: TinyVocab.bpe()) }

    static func byte(_ b: UInt8) -> Int32 { 4 + Int32(b) }
    static func bytes(_ s: String) -> [Int32] { s.utf8.map(byte) }

    @Test func mergesByRank() {
        #expect(t.vocabularySize == 4 + 256 + 12)
        #expect(t.encode("hello world", addSpecial: true, parseSpecial: true) == [263, 268])
        // h + é + ll + o: "he" cannot form once the é bytes merged
        #expect(t.encode("héllo", addSpecial: false, parseSpecial: false) == [Self.byte(0x68), 269, 261, Self.byte(0x6F)])
        #expect(t.encode("", addSpecial: true, parseSpecial: true) == [])
    }

    @Test func specialTokenText() {
        #expect(t.encode("hello<|im_end|>", addSpecial: false, parseSpecial: true) == [263, 2])
        #expect(t.encode("hello<|im_end|>", addSpecial: false, parseSpecial: false) == [263] + Self.bytes("<|im_end|>"))
        // user-defined tokens are split out even without parseSpecial
        #expect(t.encode("a<tool>b", addSpecial: false, parseSpecial: false) == [Self.byte(0x61), 3, Self.byte(0x62)])
        #expect(t.encode("<|im_start|><|im_start|>", addSpecial: false, parseSpecial: true) == [1, 1])
    }

    @Test func decodeAndPieces() {
        #expect(t.decode([263, 2, 268]) == "hello world")
        #expect(t.decode([263, 2, 268], renderSpecial: true) == "hello<|im_end|> world")
        #expect(t.tokenBytes(269) == [0xC3, 0xA9])
        #expect(t.tokenText(269) == "Ã©")
        #expect(t.tokenText(268) == "Ġworld")
        #expect(t.tokenText(-1) == "" && t.tokenBytes(99_999) == [])
        #expect(t.isControl(2) && !t.isControl(3) && !t.isControl(263))
        #expect(t.attributes(3) == .userDefined)
        let text = "hello wörld, 'tis  fine\n\t"
        #expect(t.decode(t.encode(text, addSpecial: false, parseSpecial: false)) == text)
    }

    @Test func specialIDs() {
        #expect(t.bosToken == 0)
        #expect(t.eosToken == 2)
        #expect(!t.addBOS)
        #expect(t.endOfGenerationTokens == [0, 2])  // <|endoftext|> by its text, <|im_end|> as EOS
    }

    @Test func preTokenizersDiffer() throws {
        let smol = try makeTokenizer(metadata: TinyVocab.bpe(pre: "smollm"))
        // qwen2 keeps "'S" together (case-insensitive contraction); GPT-2 rules split it
        #expect(t.encode("IT'S", addSpecial: false, parseSpecial: false) == Self.bytes("IT'S"))
        #expect(t.encode(" 's", addSpecial: false, parseSpecial: false) == [270, Self.byte(0x73)])
        #expect(smol.encode(" 's", addSpecial: false, parseSpecial: false) == [270, Self.byte(0x73)])
    }
}

@Suite("SentencePiece on a tiny vocabulary")
struct TinySPMTests {
    static func byte(_ b: UInt8) -> Int32 { 6 + Int32(b) }

    @Test func highestScoreFirst() throws {
        let t = try makeTokenizer(metadata: TinyVocab.spm(addSpacePrefix: false))
        // "bc" (-5) outscores "ab" (-6); there is no "abc"
        #expect(t.encode("abc", addSpecial: false, parseSpecial: false) == [263, 268])
        #expect(t.encode("abc", addSpecial: true, parseSpecial: false) == [2, 263, 268])
        #expect(t.encode(" ab", addSpecial: false, parseSpecial: false) == [269])
        #expect(t.addBOS && t.bosToken == 2 && t.eosToken == 1)
    }

    @Test func spacePrefix() throws {
        let t = try makeTokenizer(metadata: TinyVocab.spm(addSpacePrefix: true))
        // "▁abc": ▁a first, then ▁ab; "bc" is stale by then
        #expect(t.encode("abc", addSpecial: false, parseSpecial: false) == [269, 265])
        #expect(t.encode("ab", addSpecial: true, parseSpecial: false) == [2, 269])
        // text after a special token gets the prefix too
        #expect(t.encode("<start_of_turn>x", addSpecial: false, parseSpecial: true) == [4, 271])
        #expect(t.decode([269]) == "ab")  // the prefix space is dropped again
    }

    @Test func byteFallbackAndSpecials() throws {
        let t = try makeTokenizer(metadata: TinyVocab.spm(addSpacePrefix: false))
        #expect(t.encode("é", addSpecial: false, parseSpecial: false) == [Self.byte(0xC3), Self.byte(0xA9)])
        #expect(t.decode([Self.byte(0xC3), Self.byte(0xA9)]) == "é")
        #expect(t.encode("a<b>a", addSpecial: false, parseSpecial: false) == [263, 273, 263])
        #expect(t.encode("x<end_of_turn>", addSpecial: false, parseSpecial: true) == [270, 5])
        let literal = t.encode("x<end_of_turn>", addSpecial: false, parseSpecial: false)
        #expect(!literal.contains(5))
        #expect(t.decode(literal) == "x<end_of_turn>")
        #expect(t.decode([270, 5]) == "x")
        #expect(t.decode([270, 5], renderSpecial: true) == "x<end_of_turn>")
        #expect(t.endOfGenerationTokens == [1, 5])
        #expect(t.tokenBytes(262) == [0x20])  // "▁" is a space
    }
}

@Suite("Tokenizer construction errors")
struct TokenizerErrorTests {
    func error(_ meta: [String: GGUFValue]) -> TokenizerError? {
        do {
            _ = try makeTokenizer(metadata: meta)
            return nil
        } catch let e as TokenizerError {
            return e
        } catch {
            return nil
        }
    }

    @Test func unknownModelAndPreTokenizer() {
        var m = TinyVocab.bpe()
        m["tokenizer.ggml.model"] = .string("bert")
        #expect(error(m) == .unknownModel("bert"))
        let e = error(TinyVocab.bpe(pre: "llama-bpe"))
        #expect(e == .unknownPreTokenizer("llama-bpe"))
        #expect(e?.description.contains("'llama-bpe'") == true)
        #expect(e?.description.contains("qwen2") == true)
    }

    @Test func missingPieces() {
        var m = TinyVocab.bpe()
        m["tokenizer.ggml.model"] = nil
        #expect(error(m) == .missingMetadata(key: "tokenizer.ggml.model"))
        m = TinyVocab.bpe()
        m["tokenizer.ggml.tokens"] = nil
        #expect(error(m) == .missingMetadata(key: "tokenizer.ggml.tokens"))
        m = TinyVocab.bpe()
        m["tokenizer.ggml.merges"] = nil
        #expect(error(m) == .missingMetadata(key: "tokenizer.ggml.merges"))
        m = TinyVocab.bpe()
        m["tokenizer.ggml.tokens"] = .array(.string([]))
        #expect(error(m) == .emptyVocabulary)
        m = TinyVocab.bpe()
        m["tokenizer.ggml.tokens"] = .string("not an array")
        #expect(error(m) == .wrongMetadataType(key: "tokenizer.ggml.tokens", expected: "an array of strings"))
    }

    @Test func badVocabularies() {
        var m = TinyVocab.bpe()
        m["tokenizer.ggml.tokens"] = .array(.string(["a", "b", "a"]))
        m["tokenizer.ggml.token_type"] = nil
        #expect(error(m) == .duplicateToken(text: "a", firstID: 0, secondID: 2))
        m = TinyVocab.spm(addSpacePrefix: false)
        m["tokenizer.ggml.scores"] = .array(.float32([0, 1]))
        #expect(error(m) == .countMismatch(key: "tokenizer.ggml.scores", count: 2, vocabularySize: 274))
        // add_bos without a usable BOS id (the gpt2 default, 11, is out of range here)
        m = [
            "tokenizer.ggml.model": .string("gpt2"), "tokenizer.ggml.pre": .string("qwen2"),
            "tokenizer.ggml.tokens": .array(.string(["a", "b"])), "tokenizer.ggml.merges": .array(.string([])),
            "tokenizer.ggml.add_bos_token": .bool(true),
        ]
        #expect(error(m) == .missingSpecialToken(flag: "tokenizer.ggml.add_bos_token", key: "tokenizer.ggml.bos_token_id"))
    }
}
