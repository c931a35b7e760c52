import ArborGGUF
import ArborTestSupport
import Testing

/// Facts about the real models as gguf-py 0.19 (`gguf.GGUFReader`) reports them.
struct ModelFacts: Sendable, CustomTestStringConvertible {
    struct Probe: Sendable {
        let name: String
        let dims: [Int]
        let type: GGMLType
        let offset: Int
        let bytes: Int
    }

    let alias: String
    let architecture: String
    let fileSize: Int
    let dataOffset: Int
    let tensorCount: Int
    let metadataCount: Int
    let lastKey: String
    let blockCount: Int
    let embeddingLength: Int
    let vocabulary: Int
    let firstTokens: [String]
    let eosTokenID: Int
    let tensorBytes: Int
    let typeCounts: [GGMLType: Int]
    let probes: [Probe]

    var testDescription: String { alias }

    static let all: [ModelFacts] = [
        ModelFacts(
            alias: ModelFiles.smollm2, architecture: "llama", fileSize: 98_362_432, dataOffset: 1_785_664,
            tensorCount: 272, metadataCount: 33, lastKey: "general.quantization_version",
            blockCount: 30, embeddingLength: 576, vocabulary: 49152,
            firstTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eosTokenID: 2,
            tensorBytes: 96_576_768, typeCounts: [.q4_1: 210, .f32: 61, .q8_0: 1],
            probes: [
                Probe(name: "token_embd.weight", dims: [576, 49152], type: .q8_0, offset: 0, bytes: 30_081_024),
                Probe(name: "blk.0.attn_q.weight", dims: [576, 576], type: .q4_1, offset: 32_020_992, bytes: 207_360),
                Probe(name: "output_norm.weight", dims: [576], type: .f32, offset: 96_574_464, bytes: 2304),
            ]),
        ModelFacts(
            alias: ModelFiles.qwenDraft, architecture: "qwen2", fileSize: 491_400_064, dataOffset: 5_947_776,
            tensorCount: 291, metadataCount: 26, lastKey: "general.quantization_version",
            blockCount: 24, embeddingLength: 896, vocabulary: 151_936,
            firstTokens: ["!", "\"", "#"], eosTokenID: 151_645,
            tensorBytes: 485_452_288, typeCounts: [.q5_0: 133, .f32: 121, .q8_0: 13, .q6_K: 12, .q4_K: 12],
            probes: [
                Probe(name: "output.weight", dims: [896, 151_936], type: .q8_0, offset: 0, bytes: 144_643_072),
                Probe(name: "blk.0.ffn_down.weight", dims: [4864, 896], type: .q6_K, offset: 238_239_232, bytes: 3_575_040),
                Probe(name: "blk.0.attn_k.bias", dims: [128], type: .f32, offset: 247_810_304, bytes: 512),
            ]),
        ModelFacts(
            alias: ModelFiles.qwenTarget, architecture: "qwen2", fileSize: 1_117_320_768, dataOffset: 5_950_528,
            tensorCount: 339, metadataCount: 26, lastKey: "general.quantization_version",
            blockCount: 28, embeddingLength: 1536, vocabulary: 151_936,
            firstTokens: ["!", "\"", "#"], eosTokenID: 151_645,
            tensorBytes: 1_111_370_240, typeCounts: [.q4_K: 169, .f32: 141, .q6_K: 29],
            probes: [
                Probe(name: "output.weight", dims: [1536, 151_936], type: .q6_K, offset: 0, bytes: 191_439_360),
                Probe(name: "blk.0.attn_q.weight", dims: [1536, 1536], type: .q4_K, offset: 351_052_288, bytes: 1_327_104),
                Probe(name: "output_norm.weight", dims: [1536], type: .f32, offset: 1_111_364_096, bytes: 6144),
            ]),
        ModelFacts(
            alias: ModelFiles.gemma3, architecture: "gemma3", fileSize: 253_113_024, dataOffset: 6_525_120,
            tensorCount: 236, metadataCount: 33, lastKey: "general.file_type",
            blockCount: 18, embeddingLength: 640, vocabulary: 262_144,
            firstTokens: ["<pad>", "<eos>", "<bos>"], eosTokenID: 1,
            tensorBytes: 246_587_904, typeCounts: [.f32: 109, .q5_0: 81, .q4_K: 27, .q8_0: 10, .q6_K: 9],
            probes: [
                Probe(name: "token_embd.weight", dims: [640, 262_144], type: .q8_0, offset: 2560, bytes: 178_257_920),
                Probe(name: "blk.0.attn_q.weight", dims: [640, 1024], type: .q5_0, offset: 178_745_344, bytes: 450_560),
                Probe(name: "blk.17.post_ffw_norm.weight", dims: [640], type: .f32, offset: 246_585_344, bytes: 2560),
            ]),
    ]
}

@Suite("Real models")
struct RealModelTests {
    @Test("each model parses and matches gguf-py", .enabled(if: ModelFacts.all.contains { ModelFiles.available($0.alias) }),
          arguments: ModelFacts.all)
    func matchesGGUFPy(_ m: ModelFacts) throws {
        guard ModelFiles.available(m.alias) else { return }  // this one is not on this machine
        let path = ModelFiles.path(m.alias)
        let clock = ContinuousClock()
        var parsed: GGUFFile?
        let elapsed = try clock.measure { parsed = try GGUFFile(path: path) }
        let f = try #require(parsed)
        // A generous bound (debug build, 2 shared cores): parsing is a few tens of milliseconds.
        #expect(elapsed < .seconds(3), "parsing \(m.alias) took \(elapsed)")

        #expect(f.version == 3)
        #expect(f.fileSize == m.fileSize)
        #expect(f.alignment == 32)
        #expect(f.dataOffset == m.dataOffset)
        #expect(f.architecture == m.architecture)
        #expect(f.metadata.count == m.metadataCount)
        #expect(Array(f.metadataKeys.prefix(3)) == ["general.architecture", "general.type", "general.name"])
        #expect(f.metadataKeys.last == m.lastKey)
        #expect(f.value(.blockCount) == .uint32(UInt32(m.blockCount)))
        #expect(try f.requireInt(.embeddingLength) == m.embeddingLength)
        let tokens = try f.requireStrings(.tokenizerTokens)
        #expect(tokens.count == m.vocabulary)
        #expect(Array(tokens.prefix(3)) == m.firstTokens)
        #expect(try f.int(.eosTokenID) == m.eosTokenID)

        #expect(f.tensors.count == m.tensorCount)
        #expect(f.tensorIndex.count == m.tensorCount)
        #expect(f.tensorBytes == m.tensorBytes)
        #expect(Dictionary(uniqueKeysWithValues: f.tensorTypeTally.map { ($0.type, $0.count) }) == m.typeCounts)
        for p in m.probes {
            let info = try f.tensorInfo(p.name)
            #expect(info.dims == p.dims, "\(p.name)")
            #expect(info.type == p.type, "\(p.name)")
            #expect(info.offset == p.offset, "\(p.name)")
            #expect(info.byteCount == p.bytes, "\(p.name)")
            #expect(f.data(of: info).count == p.bytes)
        }
        // The file is packed: the last tensor (by offset) ends at the end of the file.
        let last = f.tensors.max { $0.offset < $1.offset }!
        #expect(f.dataOffset + last.offset + last.byteCount == f.fileSize)
    }

    @Test("norm weights read in place look like norm weights",
          .enabled(if: ModelFiles.available(ModelFiles.smollm2)))
    func readsTensorData() throws {
        let f = try GGUFFile(path: ModelFiles.path(ModelFiles.smollm2))
        let norm = Array(f.data(of: try f.tensorInfo("output_norm.weight")).bindMemory(to: Float.self))
        #expect(norm.count == 576)
        #expect(norm.allSatisfy { $0.isFinite && abs($0) < 100 })
        #expect(norm.contains { $0 != 0 })
    }
}
