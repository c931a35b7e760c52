@testable import ArborTokenizers
import Testing

@Suite("Pre-tokenizer word splits")
struct PreTokenizerTests {
    func words(_ pre: PreTokenizer, _ text: String) -> [String] {
        let scalars = text.unicodeScalars.map(\.value)
        var ends: [Int32] = []
        scalars.withUnsafeBufferPointer { pre.split($0, into: &ends) }
        var out: [String] = []
        var start = 0
        for e in ends {
            out.append(String(String.UnicodeScalarView(scalars[start..<Int(e)].map { Unicode.Scalar($0)! })))
            start = Int(e)
        }
        return out
    }

    @Test func qwen2() {
        #expect(words(.qwen2, "Hello world") == ["Hello", " world"])
        #expect(words(.qwen2, "a   b") == ["a", "  ", " b"])      // \s+(?!\S) leaves one space to the word
        #expect(words(.qwen2, "a   ") == ["a", "   "])            // ...unless nothing follows
        #expect(words(.qwen2, "1234") == ["1", "2", "3", "4"])    // one digit per word
        #expect(words(.qwen2, "I'M don't") == ["I", "'M", " don", "'t"])
        #expect(words(.qwen2, "x \n\n y") == ["x", " \n\n", " y"])
        #expect(words(.qwen2, "foo!!\n\nbar") == ["foo", "!!\n\n", "bar"])
        #expect(words(.qwen2, ",b\tc") == [",b", "\tc"])           // any non-letter, non-digit, non-newline leads
        #expect(words(.qwen2, "\nb") == ["\n", "b"])
        #expect(words(.qwen2, "日本語 ok😀😀") == ["日本語", " ok", "😀😀"])
        #expect(words(.qwen2, "") == [])
    }

    @Test func smollm() {
        #expect(words(.smollm, "abc123 def") == ["abc", "1", "2", "3", " def"])
        #expect(words(.smollm, "a  1") == ["a", "  ", "1"])       // the digit split ends the space run
        #expect(words(.smollm, "I'M don't") == ["I", "'", "M", " don", "'t"])  // contractions are lowercase only
        #expect(words(.smollm, "a   b") == ["a", "  ", " b"])
        #expect(words(.smollm, "x\n\ny") == ["x", "\n", "\n", "y"])  // \s+(?!\S) gives back one newline
        #expect(words(.smollm, " !!! ?") == [" !!!", " ?"])
        #expect(words(.smollm, "½²") == ["½", "²"])               // every \p{N} alone
    }

    @Test func unicodeTablesAreLlamaCpps() {
        // U+10D4A (Garay, Unicode 16) is not a letter in llama.cpp's Unicode 15.1 tables.
        #expect(!CodepointFlags.of(0x10D4A).isLetter && CodepointFlags.of(0x10D4A).isDefined)
        #expect(CodepointFlags.of(0x2EBF0).isLetter)  // CJK Ext. I (15.1) is
        #expect(CodepointFlags.of(0x85).isWhitespace && CodepointFlags.of(0x3000).isWhitespace)
        #expect(!CodepointFlags.of(0x1C).isWhitespace && !CodepointFlags.of(0x200B).isWhitespace)
        #expect(CodepointFlags.of(0x0663).isNumber && CodepointFlags.of(0x2167).isNumber)
    }
}
