import ArborGGUF
import ArborKernels
import Testing

/// Rows of real model tensors dequantized by Arbor must hash to what gguf-py produced
/// (scripts/fixtures/make_dequant_fixtures.py): SHA-256 of the rows' float32 bytes.
@Suite("Real tensors against gguf-py")
struct RealTensorTests {
    static func check(_ model: String) throws {
        let entries = DequantFixtures.shared.real.filter { $0.model == model }
        #expect(!entries.isEmpty, "no fixture entries for \(model)")
        let file = try GGUFFile(path: modelPath(model))
        for e in entries {
            let info = try file.tensorInfo(e.tensor)
            #expect(info.type.description == e.type)
            let w = try QuantizedMatrix(file: file, info: info)
            #expect(w.columns == e.columns && w.rows == e.rowCount, "\(e.tensor) shape")
            var values: [Float] = []
            var row = [Float](repeating: 0, count: w.columns)
            for r in e.rows {
                row.withUnsafeMutableBufferPointer { dequantizeRow(w, row: r, into: $0.baseAddress!) }
                values += row
            }
            #expect(Array(values.prefix(e.head.count)) == e.head, "\(model) \(e.tensor) (\(e.type)) first values")
            #expect(sha256Hex(littleEndianBytes(values)) == e.sha256, "\(model) \(e.tensor) (\(e.type)) rows \(e.rows)")
        }
    }

    @Test(.enabled(if: modelExists("smollm2-135m"), "smollm2-135m.gguf not found (set ARBOR_MODELS_DIR)"))
    func smollm2() throws { try Self.check("smollm2-135m") }

    @Test(.enabled(if: modelExists("qwen2.5-coder-0.5b"), "qwen2.5-coder-0.5b.gguf not found (set ARBOR_MODELS_DIR)"))
    func qwenCoder05() throws { try Self.check("qwen2.5-coder-0.5b") }

    @Test(.enabled(if: modelExists("qwen2.5-coder-1.5b"), "qwen2.5-coder-1.5b.gguf not found (set ARBOR_MODELS_DIR)"))
    func qwenCoder15() throws { try Self.check("qwen2.5-coder-1.5b") }

    @Test(.enabled(if: modelExists("gemma3-270m"), "gemma3-270m.gguf not found (set ARBOR_MODELS_DIR)"))
    func gemma3() throws { try Self.check("gemma3-270m") }

    @Test func sha256KnownAnswer() {
        #expect(sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
