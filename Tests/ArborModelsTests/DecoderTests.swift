import ArborGGUF
import ArborModels
import ArborTestSupport
import Testing

/// Loads a tiny model of `arch` written to a temporary directory.
func tinyModel(_ arch: TinyModel.Architecture, configure: (inout TinyModel) -> Void = { _ in }) throws -> (DecoderModel, String, TemporaryDirectory) {
    var tiny = TinyModel(arch)
    configure(&tiny)
    let dir = try TemporaryDirectory()
    let path = try tiny.write(to: dir)
    return (try ModelRegistry.load(path: path, threads: 2), path, dir)
}

func path(to node: Int, _ parents: [Int]) -> [Int] {
    var out: [Int] = []
    var i = node
    while i >= 0 { out.insert(i, at: 0); i = parents[i] }
    return out
}

@Suite("Decoder forward pass on tiny models")
struct DecoderTests {
    @Test("Matches a naive Double-precision reference decoder", arguments: TinyModel.Architecture.allCases)
    func matchesReference(arch: TinyModel.Architecture) throws {
        let (model, path, dir) = try tinyModel(arch)
        _ = dir
        // Longer than Gemma's tiny window (6) so the sliding window matters.
        let tokens: [Int32] = [5, 77, 200, 13, 260, 1, 99, 140, 33, 250, 7, 64]
        let cache = model.makeCache(capacity: 32)
        let ours = try model.forward(.sequential(tokens, startingAt: 0), cache: cache)
        let reference = try ReferenceDecoder(path: path).logits(tokens)
        var worst = 0.0
        for i in tokens.indices {
            let row = ours.row(i).map(Double.init)
            let scale = reference[i].map(abs).max()!
            for (a, b) in zip(row, reference[i]) { worst = max(worst, abs(a - b) / scale) }
            #expect(row.indices.max(by: { row[$0] < row[$1] }) == reference[i].indices.max(by: { reference[i][$0] < reference[i][$1] }),
                    "top-1 differs at position \(i)")
        }
        // Arbor rounds queries, keys and values to F16 (like the reference engine): errors of a
        // few 1e-3 of the logit range; a wrong rotation, mask or norm gives errors of order 1.
        #expect(worst < 2e-2, "max relative logit error \(worst)")
    }

    @Test("A tree node's logits equal decoding its path alone, bit for bit", arguments: TinyModel.Architecture.allCases)
    func treeIsBitIdentical(arch: TinyModel.Architecture) throws {
        let (model, _, dir) = try tinyModel(arch) { $0.weightType = .q8_0; $0.embedding = 64 }
        _ = dir
        let prompt: [Int32] = [10, 20, 30, 40, 50]
        let parents = [-1, 0, 0, 1, 1, 2, -1, 3, 7]
        let nodes: [Int32] = [100, 101, 102, 103, 104, 105, 106, 107, 108]
        let cache = model.makeCache(capacity: 32)
        _ = try model.forward(.sequential(prompt, startingAt: 0), cache: cache)
        let base = cache.count
        let positions = nodes.indices.map { Int32(base + path(to: $0, parents).count - 1) }
        let tree = try model.forward(ForwardBatch(tokens: nodes, positions: positions, mask: .tree(parents: parents)), cache: cache)
        for node in nodes.indices {
            cache.truncate(to: base)
            var last: Logits!
            for (k, i) in path(to: node, parents).enumerated() {
                last = try model.forward(ForwardBatch(tokens: [nodes[i]], positions: [Int32(base + k)]), cache: cache)
            }
            #expect(Array(last.row(0)) == Array(tree.forToken(node)!), "node \(node)")
        }
    }

    @Test("keepPath moves a verified path into place; continuing equals direct decoding", arguments: TinyModel.Architecture.allCases)
    func keepPath(arch: TinyModel.Architecture) throws {
        let (model, _, dir) = try tinyModel(arch)
        _ = dir
        let prompt: [Int32] = [1, 2, 3]
        let parents = [-1, 0, 0, 2, 3]
        let nodes: [Int32] = [11, 12, 13, 14, 15]
        let kept = [0, 2, 3, 4]
        let cache = model.makeCache(capacity: 16)
        _ = try model.forward(.sequential(prompt, startingAt: 0), cache: cache)
        let positions = nodes.indices.map { Int32(3 + path(to: $0, parents).count - 1) }
        _ = try model.forward(ForwardBatch(tokens: nodes, positions: positions, mask: .tree(parents: parents)), cache: cache)
        try cache.keepPath(base: 3, indices: kept)
        #expect(cache.count == 7)
        #expect((0..<7).map { cache.position(at: $0) } == [0, 1, 2, 3, 4, 5, 6])
        let a = try model.forward(.sequential([9], startingAt: 7), cache: cache)

        let direct = model.makeCache(capacity: 16)
        let b0 = try model.forward(.sequential(prompt + kept.map { nodes[$0] } + [9], startingAt: 0), cache: direct)
        #expect(Array(a.row(0)) == Array(b0.row(7)))
    }

    @Test("Truncate then re-decode reproduces the same logits", arguments: TinyModel.Architecture.allCases)
    func truncateRollback(arch: TinyModel.Architecture) throws {
        let (model, _, dir) = try tinyModel(arch)
        _ = dir
        let cache = model.makeCache(capacity: 4)  // grows on demand
        let first = try model.forward(.sequential([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], startingAt: 0), cache: cache)
        cache.truncate(to: 6)
        let again = try model.forward(.sequential([7, 8, 9, 10], startingAt: 6), cache: cache)
        for i in 0..<4 { #expect(Array(again.row(i)) == Array(first.row(6 + i))) }
    }

    @Test("Bad inputs are typed errors and leave the cache untouched")
    func badInputs() throws {
        let (model, _, dir) = try tinyModel(.llama) { $0.contextLength = 8 }
        _ = dir
        let vocab = model.configuration.vocabularySize
        let cache = model.makeCache(capacity: 8)
        #expect(throws: ModelError.invalidBatch("empty batch")) { try model.forward(ForwardBatch(tokens: [], positions: []), cache: cache) }
        #expect(throws: ModelError.tokenOutOfRange(token: Int32(vocab), vocabularySize: vocab)) {
            try model.forward(ForwardBatch(tokens: [Int32(vocab)], positions: [0]), cache: cache)
        }
        #expect(throws: ModelError.self) { try model.forward(ForwardBatch(tokens: [1, 2], positions: [0]), cache: cache) }
        #expect(throws: ModelError.self) {
            try model.forward(ForwardBatch(tokens: [1, 2], positions: [0, 1], mask: .tree(parents: [0, -1])), cache: cache)
        }
        #expect(throws: ModelError.self) {
            try model.forward(ForwardBatch(tokens: [1, 2], positions: [0, 1], mask: .explicit(visible: [[0], [1, 0]])), cache: cache)
        }
        #expect(throws: ModelError.contextFull(needed: 9, limit: 8)) {
            try model.forward(.sequential(Array(repeating: 1, count: 9), startingAt: 0), cache: cache)
        }
        #expect(cache.count == 0)
        let (other, _, dir2) = try tinyModel(.gemma3)  // other key/value widths
        _ = dir2
        #expect(throws: ModelError.self) { try model.forward(.sequential([1], startingAt: 0), cache: other.makeCache(capacity: 4)) }
        #expect(throws: ModelError.self) { try cache.keepPath(base: 0, indices: [0]) }
    }

    @Test("Unknown architectures, missing tensors and bad shapes are clear errors")
    func loadErrors() throws {
        let dir = try TemporaryDirectory()
        var w = TinyModel(.llama).writer()
        w.set("general.architecture", .string("mamba9"))
        let unknown = try w.write(to: dir.url, name: "unknown.gguf").path
        #expect(throws: ModelError.unknownArchitecture(path: unknown, architecture: "mamba9", known: ["llama", "qwen2", "gemma3"])) {
            try ModelRegistry.load(path: unknown)
        }
        let message = "\(ModelError.unknownArchitecture(path: unknown, architecture: "mamba9", known: ModelRegistry.architectures))"
        #expect(message.contains("mamba9") && message.contains("unknown.gguf"))

        var missing = TinyModel(.llama).writer()
        missing.tensors.removeAll { String(decoding: $0.name, as: UTF8.self) == "blk.1.ffn_up.weight" }
        let missingPath = try missing.write(to: dir.url, name: "missing.gguf").path
        #expect(throws: ModelError.file(.missingTensor(path: missingPath, name: "blk.1.ffn_up.weight"))) {
            try ModelRegistry.load(path: missingPath)
        }

        var shape = TinyModel(.llama).writer()
        shape.set(.headCount, .uint32(5))  // 64 is not divisible into 5 heads of 16
        let shapePath = try shape.write(to: dir.url, name: "shape.gguf").path
        #expect(throws: ModelError.self) { try ModelRegistry.load(path: shapePath) }
    }
}
