#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A piece of the input: plain text still to tokenize, or a special token already matched.
enum Fragment: Equatable {
    case text(Range<Int>)
    case token(Int32)
}

extension Vocabulary {
    /// Split the special tokens' text out of `bytes`, as llama.cpp's `tokenizer_st_partition`:
    /// token by token, longest text first, every non-overlapping occurrence (left to right) in
    /// the text that is still plain. Control and unknown tokens only when `parseSpecial`;
    /// user-defined tokens always.
    func partition(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Fragment] {
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return [] }
        var fragments: [Fragment] = [.text(0..<n)]
        let filter = SubstringFilter(bytes)

        table.storage.withUnsafeBufferPointer { storage in
            for id in specialTokens {
                let attr = attributes[Int(id)]
                if !parseSpecial && !attr.isDisjoint(with: [.control, .unknown]) { continue }
                let r = table.range(of: id)
                let length = r.count
                guard length > 0, length <= n else { continue }
                let needle = storage.baseAddress! + r.lowerBound
                guard filter.mayContain(needle, length) else { continue }
                guard find(needle, length, in: base, 0..<n) != nil else { continue }

                var out: [Fragment] = []
                out.reserveCapacity(fragments.count + 2)
                for f in fragments {
                    guard case let .text(range) = f else { out.append(f); continue }
                    var start = range.lowerBound
                    while start < range.upperBound {
                        guard let at = find(needle, length, in: base, start..<range.upperBound) else { break }
                        if at > start { out.append(.text(start..<at)) }
                        out.append(.token(id))
                        start = at + length
                    }
                    if start < range.upperBound { out.append(.text(start..<range.upperBound)) }
                }
                fragments = out
            }
        }
        return fragments
    }
}

/// Answers "can these bytes occur in the text?" without scanning it: exactly for 1- and 2-byte
/// prefixes, with a one-hash Bloom filter of 4- and 8-byte windows for longer ones. Thousands
/// of special tokens (Gemma's `<unusedN>`) then cost one probe each instead of one scan each.
private struct SubstringFilter {
    var bytes1 = [UInt64](repeating: 0, count: 4)
    var bytes2 = [UInt64](repeating: 0, count: 1024)
    var grams4: [UInt64] = []
    var grams8: [UInt64] = []
    var mask = 0

    init(_ text: UnsafeBufferPointer<UInt8>) {
        let n = text.count
        for i in 0..<n {
            let b = Int(text[i])
            bytes1[b >> 6] |= 1 << UInt64(b & 63)
            if i + 1 < n {
                let k = b << 8 | Int(text[i + 1])
                bytes2[k >> 6] |= 1 << UInt64(k & 63)
            }
        }
        guard n >= 64 else { return }  // short texts: scanning is as cheap as filtering
        var bits = 1024
        while bits < n * 16 { bits <<= 1 }
        mask = bits - 1
        grams4 = [UInt64](repeating: 0, count: bits / 64)
        grams8 = [UInt64](repeating: 0, count: bits / 64)
        let raw = UnsafeRawPointer(text.baseAddress!)
        for i in 0..<n {
            if i + 4 <= n { Self.set(&grams4, Self.slot(UInt64(raw.loadUnaligned(fromByteOffset: i, as: UInt32.self)), mask)) }
            if i + 8 <= n { Self.set(&grams8, Self.slot(raw.loadUnaligned(fromByteOffset: i, as: UInt64.self), mask)) }
        }
    }

    /// MurmurHash3's finalizer: every input bit reaches the low bits.
    @inline(__always) static func slot(_ v: UInt64, _ mask: Int) -> Int {
        var x = v
        x ^= x >> 33
        x &*= 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        x &*= 0xC4CE_B9FE_1A85_EC53
        x ^= x >> 33
        return Int(truncatingIfNeeded: x) & mask
    }

    @inline(__always) static func set(_ bits: inout [UInt64], _ i: Int) { bits[i >> 6] |= 1 << UInt64(i & 63) }
    @inline(__always) static func test(_ bits: [UInt64], _ i: Int) -> Bool { bits[i >> 6] & (1 << UInt64(i & 63)) != 0 }

    func mayContain(_ p: UnsafePointer<UInt8>, _ length: Int) -> Bool {
        let b = Int(p[0])
        guard bytes1[b >> 6] & (1 << UInt64(b & 63)) != 0 else { return false }
        guard length >= 2 else { return true }
        let k = b << 8 | Int(p[1])
        guard bytes2[k >> 6] & (1 << UInt64(k & 63)) != 0 else { return false }
        guard mask != 0, length >= 4 else { return true }
        let raw = UnsafeRawPointer(p)
        guard Self.test(grams4, Self.slot(UInt64(raw.loadUnaligned(as: UInt32.self)), mask)) else { return false }
        guard length >= 8 else { return true }
        return Self.test(grams8, Self.slot(raw.loadUnaligned(as: UInt64.self), mask))
    }
}

/// The first index in `range` where the `length` bytes at `needle` occur in `haystack`.
@inline(__always)
private func find(_ needle: UnsafePointer<UInt8>, _ length: Int, in haystack: UnsafePointer<UInt8>, _ range: Range<Int>) -> Int? {
    var start = range.lowerBound
    let first = Int32(needle[0])
    while range.upperBound - start >= length {
        guard let p = memchr(haystack + start, first, range.upperBound - start - length + 1) else { return nil }
        let at = UnsafeRawPointer(haystack).distance(to: UnsafeRawPointer(p))
        if length == 1 || memcmp(haystack + at + 1, needle + 1, length - 1) == 0 { return at }
        start = at + 1
    }
    return nil
}
