import ArborGGUF
@testable import ArborTokenizers

/// Hand-built vocabularies for hermetic tests (no model files).
enum TinyVocab {
    /// GPT-2 byte-level text of a string.
    static func byteLevel(_ s: String) -> String {
        String(String.UnicodeScalarView(s.utf8.map { Unicode.Scalar(ByteLevel.byteToUnicode[Int($0)])! }))
    }

    /// A byte-level BPE: three control tokens, the 256 byte symbols, and merges building
    /// "hello", " world", "é" and " 's".
    static func bpe(pre: String = "qwen2", extra: [String: GGUFValue] = [:]) -> [String: GGUFValue] {
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]
        let bytes = (0..<256).map { String(Character(Unicode.Scalar(ByteLevel.byteToUnicode[$0])!)) }
        let e = byteLevel("é")  // two symbols: the byte-level forms of C3 and A9
        let eMerge = String(e.unicodeScalars.first!) + " " + String(e.unicodeScalars.last!)
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", eMerge, "Ġ '", "Ġ' s"]
        let merged = ["he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "Ġworl", "Ġworld", e, "Ġ'", "Ġ's"]
        let tokens = specials + bytes + merged
        let types = specials.map { $0 == "<tool>" ? Int32(4) : 3 } + Array(repeating: Int32(1), count: bytes.count + merged.count)
        var meta: [String: GGUFValue] = [
            "tokenizer.ggml.model": .string("gpt2"),
            "tokenizer.ggml.pre": .string(pre),
            "tokenizer.ggml.tokens": .array(.string(tokens)),
            "tokenizer.ggml.token_type": .array(.int32(types)),
            "tokenizer.ggml.merges": .array(.string(merges)),
            "tokenizer.ggml.bos_token_id": .uint32(0),
            "tokenizer.ggml.eos_token_id": .uint32(2),
        ]
        for (k, v) in extra { meta[k] = v }
        return meta
    }

    /// A SentencePiece vocabulary: `<pad> <eos> <bos> <unk>`, the 256 byte tokens, then pieces
    /// with scores ("bc" outscores "ab", no "abc").
    static func spm(addSpacePrefix: Bool, extra: [String: GGUFValue] = [:]) -> [String: GGUFValue] {
        let specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        let bytes = (0..<256).map { b in "<0x" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true) + ">" }
        let pieces: [(String, Float)] = [
            ("▁", -1), ("a", -2), ("b", -2), ("c", -2), ("▁a", -3), ("ab", -6), ("bc", -5), ("▁ab", -4),
            ("x", -2), ("▁x", -3), ("\n", -1), ("<b>", 0),
        ]
        let tokens = specials + bytes + pieces.map(\.0)
        let scores = Array(repeating: Float(-1000), count: specials.count) + Array(repeating: 0, count: 256) + pieces.map(\.1)
        let types = Array(repeating: Int32(3), count: specials.count) + Array(repeating: 6, count: 256)
            + pieces.map { $0.0 == "<b>" ? Int32(4) : 1 }
        var meta: [String: GGUFValue] = [
            "tokenizer.ggml.model": .string("llama"),
            "tokenizer.ggml.pre": .string("default"),
            "tokenizer.ggml.tokens": .array(.string(tokens)),
            "tokenizer.ggml.scores": .array(.float32(scores)),
            "tokenizer.ggml.token_type": .array(.int32(types)),
            "tokenizer.ggml.bos_token_id": .uint32(2),
            "tokenizer.ggml.eos_token_id": .uint32(1),
            "tokenizer.ggml.unknown_token_id": .uint32(3),
            "tokenizer.ggml.add_space_prefix": .bool(addSpacePrefix),
            "tokenizer.ggml.add_bos_token": .bool(true),
        ]
        for (k, v) in extra { meta[k] = v }
        return meta
    }
}
