#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exact map between byte strings and dense ids: `id → bytes` by offset, `bytes → id` by an
/// open-addressing hash table. Lookups take a buffer slice and allocate nothing.
///
/// Keys are compared as bytes. (A Swift `String`-keyed dictionary would merge canonically
/// equivalent tokens such as "é" and "e\u{301}", which real vocabularies contain as different ids.)
struct ByteStringTable: Sendable {
    private(set) var storage: [UInt8] = []
    /// `offsets[id]..<offsets[id + 1]` is the string of `id`.
    private(set) var offsets: [Int32] = [0]
    private var slots: [Int32] = []
    private var mask = 0

    var count: Int { offsets.count - 1 }

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return h ^ (h >> 29)
    }

    /// The id of `p`, or -1.
    @inline(__always)
    func lookup(_ p: UnsafeBufferPointer<UInt8>) -> Int32 {
        var i = Int(truncatingIfNeeded: Self.hash(p)) & mask
        return storage.withUnsafeBufferPointer { st in
            offsets.withUnsafeBufferPointer { off in
                slots.withUnsafeBufferPointer { sl in
                    while true {
                        let id = sl[i]
                        if id < 0 { return -1 }
                        let a = Int(off[Int(id)]), b = Int(off[Int(id) + 1])
                        if b - a == p.count && (p.count == 0 || memcmp(st.baseAddress! + a, p.baseAddress!, p.count) == 0) {
                            return id
                        }
                        i = (i + 1) & mask
                    }
                }
            }
        }
    }

    func lookup(_ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBufferPointer { lookup($0) }
    }

    /// Append a string with the next id, even if it is already present (the caller checks);
    /// returns the new id.
    @discardableResult
    mutating func append(_ bytes: [UInt8]) -> Int32 {
        let id = Int32(count)
        storage.append(contentsOf: bytes)
        offsets.append(Int32(storage.count))
        if count * 2 > slots.count { rehash(slots.count * 2) } else { insertSlot(id) }
        return id
    }

    /// The id of `bytes`, appending it if absent.
    mutating func intern(_ bytes: [UInt8]) -> Int32 {
        let found = lookup(bytes)
        return found >= 0 ? found : append(bytes)
    }

    /// The id of `bytes`, appending it if absent.
    mutating func intern(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
        let found = lookup(bytes)
        return found >= 0 ? found : append(Array(bytes))
    }

    private mutating func insertSlot(_ id: Int32) {
        let a = Int(offsets[Int(id)]), b = Int(offsets[Int(id) + 1])
        let h = storage.withUnsafeBufferPointer { Self.hash(UnsafeBufferPointer(rebasing: $0[a..<b])) }
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = id
    }

    private mutating func rehash(_ size: Int) {
        slots = Array(repeating: -1, count: size)
        mask = size - 1
        for id in 0..<Int32(count) { insertSlot(id) }
    }

    @inline(__always)
    func range(of id: Int32) -> Range<Int> { Int(offsets[Int(id)])..<Int(offsets[Int(id) + 1]) }

    func bytes(of id: Int32) -> ArraySlice<UInt8> { storage[range(of: id)] }

    func byteCount(of id: Int32) -> Int { Int(offsets[Int(id) + 1] - offsets[Int(id)]) }
}
