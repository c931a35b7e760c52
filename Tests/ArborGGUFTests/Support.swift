import ArborGGUF
import ArborTestSupport
import Testing

/// The path label used for in-memory parses, so error messages can be checked for it.
let testPath = "in-memory-test-model.gguf"

/// A small but complete file: metadata of several types and three f32 tensors, the last of
/// which ends on the alignment (so the file has no trailing padding and every cut is an error).
func smallWriter(version: UInt32 = 3, alignment: Int = 32) -> GGUFWriter {
    var w = GGUFWriter(version: version, alignment: alignment)
    w.set("general.architecture", .string("llama"))
    w.set(.name, .string("tiny ✓"))
    w.set(.blockCount, .uint32(2))
    w.set(.layerNormRMSEpsilon, .float32(1e-5))
    w.set("tokenizer.ggml.tokens", .array(.string(["<s>", "</s>", "a", "é"])))
    w.set("tokenizer.ggml.scores", .array(.float32([0, -1, -2.5, 3])))
    w.set("x.nested", .array(.array([.int16([1, -2]), .string(["x"]), .array([])])))
    w.set("x.flag", .bool(true))
    w.addTensor("token_embd.weight", dims: [4, 3], type: .f32, floats: (0..<12).map { Float($0) })
    w.addTensor("output_norm.weight", dims: [4], type: .f16, floats: [1, 2, 3, 4])
    // 32 * rows bytes: a multiple of any power-of-two alignment up to 32 * rows.
    let rows = max(8, alignment / 32)
    w.addTensor("blk.0.attn_q.weight", dims: [8, rows], type: .f32, floats: [Float](repeating: 0.5, count: 8 * rows))
    return w
}

/// Parse in memory and return the `GGUFError` thrown, recording an issue if there is none.
@discardableResult
func parseError(_ w: GGUFWriter, sourceLocation: SourceLocation = #_sourceLocation) -> GGUFError? {
    parseError(w.bytes(), sourceLocation: sourceLocation)
}

@discardableResult
func parseError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> GGUFError? {
    let error = #expect(throws: GGUFError.self, sourceLocation: sourceLocation) {
        try GGUFFile(copying: bytes, path: testPath)
    }
    if let error {
        #expect(error.description.contains(testPath), "message must name the file: \(error)",
                sourceLocation: sourceLocation)
    }
    return error
}

/// Byte offset of the first occurrence of `needle` in `haystack`.
func offset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
        return i
    }
    return nil
}

/// A deterministic generator (SplitMix64) so that random tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
