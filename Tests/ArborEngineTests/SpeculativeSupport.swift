import ArborEngine
import ArborModels
import ArborTestSupport
import ArborTokenizers

/// A tiny target of `arch` and a draft model of the same shape and vocabulary with other
/// weights (seed 11), loaded from GGUF files written for the duration of `body`.
func withTargetAndDraft(_ arch: TinyModel.Architecture, contextLength: Int,
                        _ body: (_ target: ModelBundle, _ draft: ModelBundle) throws -> Void) throws {
    try TemporaryDirectory.with { dir in
        var target = TinyModel(arch)
        target.contextLength = contextLength
        var other = target
        other.seed = 11
        try body(try ModelBundle.load(path: try target.write(to: dir), threads: 1),
                 try ModelBundle.load(path: try other.write(to: dir), threads: 1))
    }
}

/// A drafter for tests: each round it proposes a random tree (seeded) mixing tokens the caller's
/// `oracle` expects (so that some nodes are accepted) with random tokens (so that many are not).
final class RandomTreeDrafter: Drafter {
    var rng: SplitMix64
    let vocabulary: Int
    /// The token the target would emit after `context`, if known (nil: only random tokens).
    let oracle: ([Int32]) -> Int32?
    var name: String { "random-tree" }
    var rounds = 0

    init(seed: UInt64, vocabulary: Int, oracle: @escaping ([Int32]) -> Int32? = { _ in nil }) {
        rng = SplitMix64(seed: seed)
        self.vocabulary = vocabulary
        self.oracle = oracle
    }

    func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        Draft(tree: try proposeTree(context: context, budget: budget))
    }

    func proposeTree(context: [Int32], budget: DraftBudget) throws -> TokenTree {
        rounds += 1
        var tree = TokenTree()
        var paths: [[Int32]] = []
        let target = Int(rng.next() % UInt64(budget.maxNodes + 1))
        while tree.count < min(target, budget.maxNodes) {
            // Pick a parent whose depth leaves room, or the context.
            let candidates = [-1] + tree.tokens.indices.filter { tree.depths[$0] < budget.maxDepth }
            let parent = candidates[Int(rng.next() % UInt64(candidates.count))]
            guard tree.children(of: parent).count < budget.maxWidth else { if candidates.count == 1 { break } else { continue } }
            let prefix = parent < 0 ? [] : paths[parent]
            var token = Int32(rng.next() % UInt64(vocabulary))
            if rng.next() % 3 != 0, let t = oracle(context + prefix) { token = t }
            if tree.child(of: parent, token: token) != nil { token = Int32(rng.next() % UInt64(vocabulary)) }
            if tree.child(of: parent, token: token) != nil { continue }
            tree.append(token: token, parent: parent, confidence: Float(rng.next() % 1000) / 1000)
            paths.append(prefix + [token])
        }
        return tree
    }
}

/// A tokenizer with the end-of-generation set (or BOS) changed, for stop-rule and vocabulary tests.
struct TokenizerOverride: Tokenizer {
    let base: any Tokenizer
    var endOfGenerationTokens: Set<Int32>
    var bosToken: Int32?

    init(_ base: any Tokenizer, endOfGeneration: Set<Int32>? = nil, bos: Int32?? = nil) {
        self.base = base
        endOfGenerationTokens = endOfGeneration ?? base.endOfGenerationTokens
        bosToken = bos ?? base.bosToken
    }

    var vocabularySize: Int { base.vocabularySize }
    var eosToken: Int32? { base.eosToken }
    var addBOS: Bool { base.addBOS }
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32] { base.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial) }
    func decode(_ ids: [Int32], renderSpecial: Bool) -> String { base.decode(ids, renderSpecial: renderSpecial) }
    func tokenBytes(_ id: Int32) -> [UInt8] { base.tokenBytes(id) }
    func tokenText(_ id: Int32) -> String { base.tokenText(id) }
    func isControl(_ id: Int32) -> Bool { base.isControl(id) }
    func attributes(_ id: Int32) -> TokenAttributes { base.attributes(id) }
}

/// A language model whose logits are a fixed pseudo-random function of the last two tokens and
/// the position, over a handful of live tokens (all others -inf). Small enough that the exact
/// distribution of a short continuation can be enumerated, yet it runs through the real
/// speculative loop (its cache really appends, truncates and keeps paths).
final class TableModel: LanguageModel, @unchecked Sendable {
    let configuration: ModelConfiguration
    let live: [Int32]
    let seed: UInt64
    let spread: Float
    /// Maps this model's token ids to the ids its table is keyed by: a table over another
    /// vocabulary can then be the same function of the text.
    let canonical: [Int32: Int32]

    init(configuration: ModelConfiguration, live: [Int32], seed: UInt64, spread: Float = 1.6, canonical: [Int32: Int32] = [:]) {
        self.configuration = configuration
        self.live = live
        self.seed = seed
        self.spread = spread
        self.canonical = canonical
    }

    func makeCache(capacity: Int) -> any KVCache { TokenCache() }

    /// Logits after a sequence ending in `a, b` at position `pos`.
    func logits(a: Int32, b: Int32, position: Int) -> [Float] {
        var out = [Float](repeating: -.infinity, count: configuration.vocabularySize)
        let a = canonical[a] ?? a, b = canonical[b] ?? b
        for t in live {
            let key = canonical[t] ?? t
            var r = SplitMix64(seed: seed &* 31 &+ UInt64(bitPattern: Int64(a)) &* 1_000_003 &+ UInt64(bitPattern: Int64(b)) &* 7919 &+ UInt64(position) &* 104_729 &+ UInt64(key))
            out[Int(t)] = (Float(r.next() % 10_000) / 10_000 - 0.5) * 2 * spread
        }
        return out
    }

    func forward(_ batch: ForwardBatch, cache anyCache: any KVCache) throws(ModelError) -> Logits {
        guard let cache = anyCache as? TokenCache else { throw .wrongCache("not a token cache") }
        let visible = try batch.mask.visibleIndices(count: batch.tokens.count)
        let base = cache.count
        for (i, t) in batch.tokens.enumerated() { cache.tokens.append(t); cache.positions.append(batch.positions[i]) }
        let rows = batch.logitIndices ?? Array(batch.tokens.indices)
        var values: [Float] = []
        for i in rows {
            // The sequence token i sees: the shared cache (or its visible part) then its batch ancestors.
            var seq: [Int32]
            if let cv = batch.cacheVisibility {
                seq = Array(cache.tokens[0..<cv.sharedPrefix]) + cv.extraSlots[i].map { cache.tokens[$0] }
            } else {
                seq = Array(cache.tokens[0..<base])
            }
            seq += visible[i].map { batch.tokens[$0] }
            let a = seq.count >= 2 ? seq[seq.count - 2] : -1
            values += logits(a: a, b: seq[seq.count - 1], position: Int(batch.positions[i]))
        }
        return Logits(vocabularySize: configuration.vocabularySize, batchIndices: rows, values: values)
    }
}

final class TokenCache: KVCache {
    var tokens: [Int32] = []
    var positions: [Int32] = []
    var count: Int { tokens.count }
    func position(at index: Int) -> Int32 { positions[index] }
    func truncate(to length: Int) {
        if length < count { tokens.removeLast(count - length); positions.removeLast(count - length) }
    }
    func keepPath(base: Int, indices: [Int]) throws(ModelError) {
        let kt = indices.map { tokens[base + $0] }, kp = indices.map { positions[base + $0] }
        tokens = Array(tokens[0..<base]) + kt
        positions = Array(positions[0..<base]) + kp
    }
}

/// Drafts a chain sampled from its own distribution q (a different table), attaching q so the
/// verifier uses the p/q rule; or, with `pointMass`, a random deterministic tree over the live tokens.
final class TableDrafter: Drafter {
    let model: TableModel
    var rng: Xoshiro256StarStar
    let pointMass: Bool
    var name: String { pointMass ? "table-tree" : "table-chain" }

    init(model: TableModel, seed: UInt64, pointMass: Bool) {
        self.model = model
        rng = Xoshiro256StarStar(seed: seed)
        self.pointMass = pointMass
    }

    func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        Draft(tree: try proposeTree(context: context, budget: budget))
    }

    func proposeTree(context: [Int32], budget: DraftBudget) throws -> TokenTree {
        var tree = TokenTree()
        if pointMass {
            // The draft table's top tokens (1...maxWidth of them) under the context, and under the
            // first root: deterministic proposals, as a top-k tree drafter makes them.
            var seq = context
            for parent in [-1, 0] where parent < tree.count && (parent < 0 || budget.maxDepth >= 2) {
                if parent == 0 { seq.append(tree.tokens[0]) }
                let l = model.logits(a: seq.count >= 2 ? seq[seq.count - 2] : -1, b: seq[seq.count - 1], position: seq.count)
                let ranked = model.live.sorted { l[Int($0)] > l[Int($1)] }
                let width = 1 + Int(rng.next() % UInt64(budget.maxWidth))
                for t in ranked.prefix(width) where tree.count < budget.maxNodes {
                    tree.append(token: t, parent: parent, confidence: 0.5)
                }
            }
            return tree
        }
        var seq = context
        for d in 0..<min(budget.maxDepth, budget.maxNodes) {
            let l = model.logits(a: seq.count >= 2 ? seq[seq.count - 2] : -1, b: seq[seq.count - 1], position: seq.count)
            // q: softmax of the draft table's logits (no filtering: q covers every live token).
            let m = l.max()!
            var q = l.map { $0 == -.infinity ? Float(0) : Float(exp(Double($0 - m))) }
            let s = q.reduce(0, +)
            q = q.map { $0 / s }
            let x = Int32(q.withUnsafeBufferPointer { CategoricalDraw.draw($0) { rng.nextDouble() } })
            tree.append(token: x, parent: d - 1, confidence: q[Int(x)], proposal: ProposalDistribution(q))
            seq.append(x)
        }
        return tree
    }
}

#if canImport(Glibc)
import Glibc
#endif
