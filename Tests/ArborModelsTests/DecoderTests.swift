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

    @Test("Long contexts: logits do not depend on chunking, thread count or splitting a list across threads",
          arguments: TinyModel.Architecture.allCases)
    func longContextInvariance(arch: TinyModel.Architecture) throws {
        // 1,200 tokens: lists of up to three attention segments (512 slots each).
        var tiny = TinyModel(arch)
        tiny.contextLength = 1400  // F32 weights: Q8 activations could hide a last-bit difference
        let dir = try TemporaryDirectory()
        let file = try tiny.write(to: dir)
        let models = try [1, 2, 3].map { try ModelRegistry.load(path: file, threads: $0) }
        var rng = SplitMix64(seed: 11)
        let tokens = (0..<1200).map { _ in Int32(rng.next() % UInt64(tiny.vocabularySize - 3)) }
        func rows(_ l: Logits, _ range: Range<Int>) -> [[Float]] { range.map { Array(l.row($0)) } }
        func delta(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }

        // One call on 2 threads; 256-token chunks on 3 threads; then token by token on 1 thread.
        let whole = models[1].makeCache(capacity: 1400)
        let all = rows(try models[1].forward(.sequential(tokens, startingAt: 0), cache: whole), 0..<1200)
        let chunked = models[2].makeCache(capacity: 1400)
        var chunkRows: [[Float]] = []
        for start in stride(from: 0, to: 1200, by: 256) {
            let part = Array(tokens[start..<min(1200, start + 256)])
            chunkRows += rows(try models[2].forward(.sequential(part, startingAt: start), cache: chunked), 0..<part.count)
        }
        let worstRow = (0..<1200).max { delta(chunkRows[$0], all[$0]) < delta(chunkRows[$1], all[$1]) }!
        #expect(chunkRows == all, "256-token chunks on 3 threads differ from one call on 2 threads: row \(worstRow), max |Δ| \(delta(chunkRows[worstRow], all[worstRow]))")
        let single = models[0].makeCache(capacity: 1400)
        _ = try models[0].forward(.sequential(Array(tokens[0..<1170]), startingAt: 0), cache: single)
        for i in 1170..<1200 {
            let row = Array(try models[0].forward(.sequential([tokens[i]], startingAt: i), cache: single).row(0))
            #expect(row == all[i], "token \(i) decoded alone on 1 thread: max |Δ| \(delta(row, all[i]))")
        }

        // Decoding after the long prompt: one (token, head) pair per key/value head, so on 2 and
        // 3 threads each list is split into segments across threads; on 1 thread it is not.
        let next = try models.map { model in
            let cache = model.makeCache(capacity: 1400)
            _ = try model.forward(.sequential(tokens, startingAt: 0), cache: cache)
            return Array(try model.forward(.sequential([7], startingAt: 1200), cache: cache).row(0))
        }
        #expect(next[0] == next[1], "decode after 1,200 tokens, 1 vs 2 threads: max |Δ| \(delta(next[0], next[1]))")
        #expect(next[0] == next[2], "decode after 1,200 tokens, 1 vs 3 threads: max |Δ| \(delta(next[0], next[2]))")

        // A tree after the long prompt equals its paths decoded alone (one token, its list split
        // across threads). Two chains of 24 from one root, interleaved in the batch: a work item
        // takes several nodes, widens the rows they all see once, and the chains' lists differ
        // over more than a chunk (16 slots), so a wrong shared prefix would show.
        let parents = [-1, 0, 0] + (3..<49).map { $0 - 2 }
        let nodes: [Int32] = (0..<49).map { Int32(100 + $0) }
        let positions = nodes.indices.map { Int32(1200 + path(to: $0, parents).count - 1) }
        let tree = try models[1].forward(ForwardBatch(tokens: nodes, positions: positions, mask: .tree(parents: parents)), cache: whole)
        for node in nodes.indices {
            whole.truncate(to: 1200)
            var last: Logits!
            for (k, i) in path(to: node, parents).enumerated() {
                last = try models[1].forward(ForwardBatch(tokens: [nodes[i]], positions: [Int32(1200 + k)]), cache: whole)
            }
            let alone = Array(last.row(0)), inTree = Array(tree.forToken(node)!)
            #expect(alone == inTree, "tree node \(node) after 1,200 tokens: max |Δ| \(delta(alone, inTree))")
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

        var wide = TinyModel(.gemma3)
        wide.headSize = 512  // more than the attention kernel's 256
        let widePath = try wide.write(to: dir)
        #expect(throws: ModelError.badConfiguration(
            path: widePath, reason: "head sizes 512/512: the attention kernel takes heads of at most 256")) {
            try ModelRegistry.load(path: widePath)
        }
    }
}
