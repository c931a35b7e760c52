/// Keys and values of the tokens a model has seen, with rollback for speculation.
///
/// Entries `0..<count` are the committed context; `LanguageModel.forward` appends one entry per
/// batch token. After verifying a draft tree the caller keeps one root-to-leaf path with
/// `keepPath`, or drops a rejected suffix with `truncate`.
public protocol KVCache: AnyObject {
    /// Number of entries held.
    var count: Int { get }
    /// The absolute position of each entry.
    func position(at index: Int) -> Int32
    /// Drop entries from `length` on (rollback). No-op if `length >= count`.
    func truncate(to length: Int)
    /// Keep entries `base + indices[k]` as entries `base + k` for each k (indices strictly
    /// increasing, each `< count - base`), drop everything else after `base`. Entries move in
    /// place without being recomputed: their keys already carry the right positions as long as
    /// the tree's positions were `base + depth`.
    func keepPath(base: Int, indices: [Int]) throws(ModelError)
}

/// The standard cache: per layer, keys and values stored as F16 `[capacity, kvHeads × headSize]`
/// (slot-major so growing is one copy and a token's entry is contiguous).
public final class StandardKVCache: KVCache, @unchecked Sendable {
    public let layerCount: Int
    public let keyDimension: Int
    public let valueDimension: Int
    /// Upper bound on growth (the model's context length).
    public let limit: Int
    public private(set) var capacity: Int
    public private(set) var count = 0
    /// [layer] → [capacity, keyDimension]
    var keys: [UnsafeMutablePointer<Float16>]
    /// [layer] → [capacity, valueDimension]
    var values: [UnsafeMutablePointer<Float16>]
    /// [capacity]
    var positions: UnsafeMutablePointer<Int32>

    public init(layerCount: Int, keyDimension: Int, valueDimension: Int, capacity: Int, limit: Int) {
        self.layerCount = layerCount
        self.keyDimension = keyDimension
        self.valueDimension = valueDimension
        self.limit = max(limit, 1)
        self.capacity = max(1, min(capacity, self.limit))
        keys = (0..<layerCount).map { _ in .allocate(capacity: max(1, min(capacity, limit)) * keyDimension) }
        values = (0..<layerCount).map { _ in .allocate(capacity: max(1, min(capacity, limit)) * valueDimension) }
        positions = .allocate(capacity: self.capacity)
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
        positions.deallocate()
    }

    /// Bytes held by keys and values.
    public var byteCount: Int { capacity * layerCount * (keyDimension + valueDimension) * 2 }

    public func position(at index: Int) -> Int32 { positions[index] }

    /// Make room for `extra` more entries, growing geometrically up to `limit`.
    func reserve(extra: Int) throws(ModelError) {
        let needed = count + extra
        guard needed <= limit else { throw .contextFull(needed: needed, limit: limit) }
        guard needed > capacity else { return }
        let newCapacity = min(limit, max(needed, capacity * 2))
        func grow(_ p: UnsafeMutablePointer<Float16>, _ width: Int) -> UnsafeMutablePointer<Float16> {
            let q = UnsafeMutablePointer<Float16>.allocate(capacity: newCapacity * width)
            q.update(from: p, count: count * width)
            p.deallocate()
            return q
        }
        keys = keys.map { grow($0, keyDimension) }
        values = values.map { grow($0, valueDimension) }
        let np = UnsafeMutablePointer<Int32>.allocate(capacity: newCapacity)
        np.update(from: positions, count: count)
        positions.deallocate()
        positions = np
        capacity = newCapacity
    }

    /// Claim `n` slots at the end; the forward pass fills them.
    func append(positions newPositions: [Int32]) throws(ModelError) {
        try reserve(extra: newPositions.count)
        for (i, p) in newPositions.enumerated() { positions[count + i] = p }
        count += newPositions.count
    }

    public func truncate(to length: Int) {
        count = max(0, min(count, length))
    }

    public func keepPath(base: Int, indices: [Int]) throws(ModelError) {
        guard base >= 0, base <= count else { throw .wrongCache("path base \(base) outside 0...\(count)") }
        var previous = -1
        for i in indices {
            guard i > previous, base + i < count else {
                throw .wrongCache("path indices \(indices) must increase and stay below \(count - base)")
            }
            previous = i
        }
        for (k, i) in indices.enumerated() where k != i {
            let from = base + i, to = base + k
            for l in 0..<layerCount {
                (keys[l] + to * keyDimension).update(from: keys[l] + from * keyDimension, count: keyDimension)
                (values[l] + to * valueDimension).update(from: values[l] + from * valueDimension, count: valueDimension)
            }
            positions[to] = positions[from]
        }
        count = base + indices.count
    }
}
