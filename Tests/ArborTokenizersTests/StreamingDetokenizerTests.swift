import ArborTestSupport
@testable import ArborTokenizers
import Testing

@Suite("Streaming detokenizer")
struct StreamingDetokenizerTests {
    let t: any Tokenizer
    init() throws { t = try makeTokenizer(metadata: TinyVocab.bpe()) }
    func byteTokens(_ bytes: [UInt8]) -> [Int32] { bytes.map { 4 + Int32($0) } }

    @Test func holdsSplitCharacters() {
        var d = StreamingDetokenizer(tokenizer: t)
        let emoji = byteTokens(Array("😀".utf8))
        #expect(d.append(263) == "hello")
        #expect(d.append(emoji[0]) == "")
        #expect(d.append(emoji[1]) == "")
        #expect(d.append(emoji[2]) == "")
        #expect(d.append(emoji[3]) == "😀")
        #expect(d.pending.isEmpty)
        let e = byteTokens([0xC3, 0xA9])
        #expect(d.append(e[0]) == "")
        #expect(d.feed(e[1]) == "é")
        #expect(d.finish() == "")
    }

    @Test func controlTokens() {
        var d = StreamingDetokenizer(tokenizer: t)
        #expect(d.append(2) == "")
        #expect(d.append(3) == "<tool>")  // user-defined tokens always render
        var s = StreamingDetokenizer(tokenizer: t, renderSpecial: true)
        #expect(s.append(2) == "<|im_end|>")
    }

    @Test func invalidBytesBecomeReplacementCharacters() {
        var d = StreamingDetokenizer(tokenizer: t)
        #expect(d.append(byteTokens([0xFF])[0]) == "\u{FFFD}")      // can never start a character
        #expect(d.append(byteTokens([0xE2])[0]) == "")
        #expect(d.append(byteTokens([0x61])[0]) == "\u{FFFD}a")     // the held lead byte was a dead end
        #expect(d.append(byteTokens([0xE2])[0]) == "")
        #expect(d.append(byteTokens([0x82])[0]) == "")
        #expect(d.finish() == "\u{FFFD}")                          // flushed incomplete
        #expect(d.append(byteTokens([0xED])[0]) == "")
        #expect(d.append(byteTokens([0xA0])[0]) == "\u{FFFD}\u{FFFD}")  // a surrogate: never valid
    }

    @Test func incompleteSuffix() {
        #expect(StreamingDetokenizer.incompleteSuffixLength([0x61, 0xF0, 0x9F, 0x98]) == 3)
        #expect(StreamingDetokenizer.incompleteSuffixLength([0xF0, 0x9F, 0x98, 0x80]) == 0)
        #expect(StreamingDetokenizer.incompleteSuffixLength([0xE0, 0x80]) == 0)  // overlong: dead
        #expect(StreamingDetokenizer.incompleteSuffixLength([0x80]) == 0)
        #expect(StreamingDetokenizer.incompleteSuffixLength([]) == 0)
    }

    static let texts = [
        "Family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵, rainbow 🏳️‍🌈, keycap 1️⃣ and 中文 «текст» 𝔘𝔫𝔦𝔠𝔬𝔡𝔢!",
        "日本語のテキストと한국어, 🙂🙃 mixed with ASCII\n\tand tabs",
        "Rare scripts fall back to bytes: Adlam 𞤀𞤁𞤂, Linear B 𐀀𐀁, cuneiform 𒀀𒀁, Garay 𐵊",
    ]

    /// Streams `texts` through a real model's tokenizer: the text comes back whole, and some
    /// character was held back across tokens on the way.
    static func streamRealModel(_ alias: String) throws {
        let tokenizer = try ModelTokenizers.get(alias)
        var heldTotal = 0
        for text in texts {
            let ids = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            var d = StreamingDetokenizer(tokenizer: tokenizer)
            var out = ""
            for id in ids {
                let piece = d.append(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}"))
                if !d.pending.isEmpty { heldTotal += 1 }
                out += piece
            }
            out += d.finish()
            #expect(utf8Equal(out, text), "[\(alias)] streamed \(out.debugDescription)")
        }
        #expect(heldTotal > 0, "[\(alias)] no character was split across tokens")
    }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.smollm2), "smollm2-135m.gguf is not in the models directory"))
    func smolLM2() throws { try Self.streamRealModel(ModelFiles.smollm2) }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.qwenDraft), "qwen2.5-coder-0.5b.gguf is not in the models directory"))
    func qwen() throws { try Self.streamRealModel(ModelFiles.qwenDraft) }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.gemma3), "gemma3-270m.gguf is not in the models directory"))
    func gemma3() throws { try Self.streamRealModel(ModelFiles.gemma3) }
}
