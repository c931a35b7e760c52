import ArborEngine
import ArborModels
import ArborTestSupport
import Testing

/// Loaded models, shared across tests (loading maps the file; cheap but not free).
enum Loaded {
    nonisolated(unsafe) static var bundles: [String: ModelBundle] = [:]
    static let lock = Mutex()

    static func bundle(_ alias: String) throws -> ModelBundle {
        try lock.locked {
            if let b = bundles[alias] { return b }
            let b = try ModelBundle.load(path: ModelFiles.path(alias), threads: 2)
            bundles[alias] = b
            return b
        }
    }
}

/// A tiny lock for test globals.
final class Mutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The draft tree used below: siblings (1, 2 under 0), cousins (3, 4 under 1; 5 under 2),
/// a second root (6) and a deeper chain (7 under 3).
let treeParents = [-1, 0, 0, 1, 1, 2, -1, 3]

/// Root-to-node path of batch indices.
func path(to node: Int, parents: [Int]) -> [Int] {
    var out: [Int] = []
    var i = node
    while i >= 0 { out.insert(i, at: 0); i = parents[i] }
    return out
}

@Suite("Tree attention and KV cache on real models", .serialized)
struct TreeAndCacheTests {
    static let models = ModelFiles.all

    @Test("A token scored inside a tree gets bit-identical logits to decoding its path alone", arguments: models)
    func treeMatchesPathDecode(alias: String) throws {
        try #require(ModelFiles.exists(alias), "model \(alias) missing at \(ModelFiles.path(alias))")
        let bundle = try Loaded.bundle(alias)
        let model = bundle.model
        let prompt = bundle.promptTokens("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n")
        let vocab = Int32(model.configuration.vocabularySize)
        // Arbitrary but fixed tokens for the tree nodes.
        let nodes: [Int32] = (0..<treeParents.count).map { Int32((1009 * ($0 + 3)) % Int(vocab)) }

        let cache = model.makeCache(capacity: 256)
        _ = try model.forward(.sequential(prompt, startingAt: 0), cache: cache)
        let base = cache.count
        let depth = (0..<nodes.count).map { path(to: $0, parents: treeParents).count - 1 }
        let tree = try model.forward(
            ForwardBatch(tokens: nodes, positions: depth.map { Int32(base + $0) }, mask: .tree(parents: treeParents)),
            cache: cache)

        for node in 0..<nodes.count {
            // Decode the node's path one token at a time on a fresh copy of the prompt cache.
            cache.truncate(to: base)
            var last: Logits!
            for (k, i) in path(to: node, parents: treeParents).enumerated() {
                last = try model.forward(ForwardBatch(tokens: [nodes[i]], positions: [Int32(base + k)]), cache: cache)
            }
            let alone = Array(last.row(0))
            let inTree = Array(tree.forToken(node)!)
            #expect(alone == inTree, "node \(node) of \(alias): max |Δ| = \(zip(alone, inTree).map { abs($0 - $1) }.max()!)")
        }
    }

    @Test("Prefill logits equal one-token-at-a-time logits bit for bit", arguments: models)
    func prefillMatchesSequential(alias: String) throws {
        try #require(ModelFiles.exists(alias), "model \(alias) missing")
        let bundle = try Loaded.bundle(alias)
        let model = bundle.model
        let tokens = bundle.promptTokens("The quick brown fox jumps over the lazy dog. 1234567")
        let cacheA = model.makeCache(capacity: 64)
        let batched = try model.forward(.sequential(tokens, startingAt: 0), cache: cacheA)
        let cacheB = model.makeCache(capacity: 64)
        for (i, t) in tokens.enumerated() {
            let one = try model.forward(.sequential([t], startingAt: i), cache: cacheB)
            #expect(Array(one.row(0)) == Array(batched.row(i)), "position \(i) of \(alias)")
        }
    }

    @Test("Generate, truncate, regenerate with the same seed gives identical tokens", arguments: models)
    func rollbackRegenerates(alias: String) throws {
        try #require(ModelFiles.exists(alias), "model \(alias) missing")
        let bundle = try Loaded.bundle(alias)
        let generator = TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer)
        let prompt = bundle.promptTokens("Once upon a time")
        var sampling = SamplingParameters.greedy
        sampling.temperature = 0.8
        sampling.topP = 0.95
        sampling.seed = 42
        let params = GenerationParameters(maxTokens: 12, sampling: sampling, stopAtEndOfText: false)
        let cache = bundle.model.makeCache(capacity: 64)
        let first = try generator.generate(promptTokens: prompt, parameters: params, cache: cache)
        #expect(cache.count == prompt.count + first.tokens.count - 1)
        // Roll back to just before the prompt's last token and generate again on the same cache.
        cache.truncate(to: prompt.count - 1)
        let again = try generator.generate(promptTokens: prompt, parameters: params, cache: cache)
        #expect(first.tokens == again.tokens)
    }

    @Test("Keeping a tree path then continuing equals decoding that path directly", arguments: models)
    func keepPathThenContinue(alias: String) throws {
        try #require(ModelFiles.exists(alias), "model \(alias) missing")
        let bundle = try Loaded.bundle(alias)
        let model = bundle.model
        let prompt = bundle.promptTokens("import numpy as np\n")
        let vocab = model.configuration.vocabularySize
        let nodes: [Int32] = (0..<treeParents.count).map { Int32((7919 * ($0 + 1)) % vocab) }
        let kept = path(to: 7, parents: treeParents)  // [0, 1, 3, 7]
        let next: Int32 = 42

        // Tree, keep one path, then one more token.
        let cache = model.makeCache(capacity: 64)
        _ = try model.forward(.sequential(prompt, startingAt: 0), cache: cache)
        let base = cache.count
        let depth = (0..<nodes.count).map { path(to: $0, parents: treeParents).count - 1 }
        _ = try model.forward(
            ForwardBatch(tokens: nodes, positions: depth.map { Int32(base + $0) }, mask: .tree(parents: treeParents)),
            cache: cache)
        try cache.keepPath(base: base, indices: kept)
        #expect(cache.count == base + kept.count)
        let afterTree = try model.forward(.sequential([next], startingAt: cache.count), cache: cache)

        // The same path decoded directly.
        let direct = model.makeCache(capacity: 64)
        _ = try model.forward(.sequential(prompt + kept.map { nodes[$0] }, startingAt: 0), cache: direct)
        let afterDirect = try model.forward(.sequential([next], startingAt: direct.count), cache: direct)
        #expect(Array(afterTree.row(0)) == Array(afterDirect.row(0)))
    }

    @Test("Bad batches are clear errors, not crashes")
    func badBatches() throws {
        try #require(ModelFiles.exists(ModelFiles.smollm2), "model missing")
        let model = try Loaded.bundle(ModelFiles.smollm2).model
        let cache = model.makeCache(capacity: 16)
        #expect(throws: ModelError.self) { try model.forward(ForwardBatch(tokens: [], positions: []), cache: cache) }
        #expect(throws: ModelError.tokenOutOfRange(token: 999_999, vocabularySize: 49152)) {
            try model.forward(ForwardBatch(tokens: [999_999], positions: [0]), cache: cache)
        }
        #expect(throws: ModelError.self) {
            try model.forward(ForwardBatch(tokens: [1, 2], positions: [0, 1], mask: .tree(parents: [1, -1])), cache: cache)
        }
        #expect(cache.count == 0, "a rejected batch must leave the cache untouched")
        #expect(throws: ModelError.self) { try cache.keepPath(base: 0, indices: [0]) }
    }
}
