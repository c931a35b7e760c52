import ArborGGUF

/// Which tokens of a batch each token may attend to, on top of the committed cache.
///
/// A token always sees every committed cache entry (subject to a model's sliding window) and,
/// within the batch, exactly the tokens this mask allows. Speculative verification uses `.tree`
/// so that each drafted node sees only its ancestors.
public enum AttentionMask: Sendable, Equatable {
    /// Token `i` sees batch tokens `0...i` (ordinary prefill or decoding).
    case causal
    /// `parents[i]` is the batch index of token `i`'s parent, or -1 for a child of the committed
    /// context. Parents must precede their children. Token `i` sees itself and its ancestors.
    case tree(parents: [Int])
    /// `visible[i]` lists the batch indices token `i` sees, in increasing order, including `i`.
    case explicit(visible: [[Int]])

    /// The batch indices each token sees, ascending; validated against the batch size.
    public func visibleIndices(count: Int) throws(ModelError) -> [[Int]] {
        switch self {
        case .causal:
            return (0..<count).map { Array(0...$0) }
        case let .tree(parents):
            guard parents.count == count else {
                throw .invalidBatch("tree has \(parents.count) parents for \(count) tokens")
            }
            var out: [[Int]] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                let p = parents[i]
                guard p >= -1, p < i else {
                    throw .invalidBatch("parent \(p) of node \(i) must be -1 or an earlier node")
                }
                out.append((p >= 0 ? out[p] : []) + [i])
            }
            return out
        case let .explicit(visible):
            guard visible.count == count else {
                throw .invalidBatch("mask has \(visible.count) rows for \(count) tokens")
            }
            for (i, row) in visible.enumerated() {
                guard row.last == i, zip(row, row.dropFirst()).allSatisfy({ $0 < $1 }), (row.first ?? 0) >= 0 else {
                    throw .invalidBatch("mask row \(i) must be ascending, within the batch, and end with \(i)")
                }
            }
            return visible
        }
    }
}

/// Which cache entries each batch token sees, when not all of them.
///
/// Normally every token sees every committed cache entry. A drafter growing a tree one depth at a
/// time keeps earlier tree nodes in its cache; their descendants must see only their own
/// ancestors among them. Then entries `0..<sharedPrefix` are seen by every token, and token `i`
/// also sees the cache slots `extraSlots[i]` (ascending, each in `sharedPrefix..<cache.count`).
public struct CacheVisibility: Sendable, Equatable {
    public var sharedPrefix: Int
    public var extraSlots: [[Int]]

    public init(sharedPrefix: Int, extraSlots: [[Int]]) {
        self.sharedPrefix = sharedPrefix
        self.extraSlots = extraSlots
    }
}

/// One forward call: new tokens, their absolute positions, and who sees whom.
public struct ForwardBatch: Sendable {
    public var tokens: [Int32]
    /// Absolute position of each token (RoPE and sliding window use it).
    public var positions: [Int32]
    public var mask: AttentionMask
    /// Batch indices whose logits are wanted, ascending. `nil` means all.
    public var logitIndices: [Int]?
    /// Which cache entries each token sees; `nil`: all of them.
    public var cacheVisibility: CacheVisibility?

    public init(tokens: [Int32], positions: [Int32], mask: AttentionMask = .causal, logitIndices: [Int]? = nil,
                cacheVisibility: CacheVisibility? = nil) {
        self.tokens = tokens
        self.positions = positions
        self.mask = mask
        self.logitIndices = logitIndices
        self.cacheVisibility = cacheVisibility
    }

    /// The same batch with logits for tokens `first...` only.
    public func withLogits(from first: Int) -> ForwardBatch {
        var b = self
        b.logitIndices = Array(max(0, first)..<tokens.count)
        return b
    }

    /// Consecutive tokens continuing a cache of `start` entries.
    public static func sequential(_ tokens: [Int32], startingAt start: Int, lastLogitsOnly: Bool = false) -> ForwardBatch {
        ForwardBatch(
            tokens: tokens,
            positions: (0..<tokens.count).map { Int32(start + $0) },
            mask: .causal,
            logitIndices: lastLogitsOnly && !tokens.isEmpty ? [tokens.count - 1] : nil)
    }
}

/// Logits for the requested rows of a batch, row-major `[rows, vocabularySize]`.
public struct Logits: Sendable {
    public let vocabularySize: Int
    /// The batch index of each row.
    public let batchIndices: [Int]
    public var values: [Float]

    public init(vocabularySize: Int, batchIndices: [Int], values: [Float]) {
        self.vocabularySize = vocabularySize
        self.batchIndices = batchIndices
        self.values = values
    }

    public var rowCount: Int { batchIndices.count }

    /// The logits of the `row`-th returned row.
    public func row(_ row: Int) -> ArraySlice<Float> {
        values[(row * vocabularySize)..<((row + 1) * vocabularySize)]
    }

    /// The logits of batch token `index`, if they were requested.
    public func forToken(_ index: Int) -> ArraySlice<Float>? {
        batchIndices.firstIndex(of: index).map(row)
    }
}

/// A causal language model that scores batches of tokens against a KV cache.
///
/// `forward` appends the batch's keys and values to the cache (its count grows by the batch
/// size) and returns logits. Callers then keep what they accept with `KVCache.truncate` or
/// `KVCache.keepPath`.
public protocol LanguageModel: AnyObject, Sendable {
    var configuration: ModelConfiguration { get }
    /// A new, empty cache for this model holding up to `capacity` tokens (grown on demand up to
    /// the model's context length).
    func makeCache(capacity: Int) -> any KVCache
    func forward(_ batch: ForwardBatch, cache: any KVCache) throws(ModelError) -> Logits
    /// Scores several batches, each against its own cache, in one pass where the model can (a
    /// server merging the rounds of several sessions). Results equal separate `forward` calls.
    func forward(segments: [(batch: ForwardBatch, cache: any KVCache)]) throws(ModelError) -> [Logits]
}

extension LanguageModel {
    /// One `forward` per segment; models that can share the pass override this.
    public func forward(segments: [(batch: ForwardBatch, cache: any KVCache)]) throws(ModelError) -> [Logits] {
        var out: [Logits] = []
        for s in segments { out.append(try forward(s.batch, cache: s.cache)) }
        return out
    }
}

/// Errors from loading or running a model.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    case unknownArchitecture(path: String, architecture: String, known: [String])
    case file(GGUFError)
    case badConfiguration(path: String, reason: String)
    case badTensor(path: String, tensor: String, reason: String)
    case invalidBatch(String)
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    case contextFull(needed: Int, limit: Int)
    case wrongCache(String)

    public var description: String {
        switch self {
        case let .unknownArchitecture(path, arch, known):
            "\(path): unknown architecture '\(arch)' (Arbor supports: \(known.joined(separator: ", ")))"
        case let .file(e): e.description
        case let .badConfiguration(path, reason): "\(path): bad model configuration: \(reason)"
        case let .badTensor(path, tensor, reason): "\(path): tensor '\(tensor)': \(reason)"
        case let .invalidBatch(reason): "invalid batch: \(reason)"
        case let .tokenOutOfRange(token, n): "token id \(token) is outside the vocabulary (0..<\(n))"
        case let .contextFull(needed, limit): "context full: \(needed) tokens needed, the limit is \(limit)"
        case let .wrongCache(reason): "wrong cache: \(reason)"
        }
    }
}

extension LanguageModel {
    /// Appends `tokens` to `cache` in forward calls of at most `chunk` tokens, continuing the
    /// cache's positions, and returns the logits of the last token (`nil` when `tokens` is empty).
    @discardableResult
    public func prefill(_ tokens: some Collection<Int32>, cache: any KVCache, chunk: Int = 256) throws(ModelError) -> Logits? {
        let all = Array(tokens)
        var logits: Logits? = nil
        var offset = 0
        while offset < all.count {
            let end = min(offset + max(chunk, 1), all.count)
            logits = try forward(.sequential(Array(all[offset..<end]), startingAt: cache.count, lastLogitsOnly: true), cache: cache)
            offset = end
        }
        return logits
    }
}
