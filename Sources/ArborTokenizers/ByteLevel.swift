/// GPT-2's reversible map between bytes and printable code points: printable Latin-1 bytes map
/// to themselves, the other 68 bytes to U+0100... in order.
enum ByteLevel {
    /// The code point standing for each byte.
    static let byteToUnicode: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var assigned = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { map[b] = UInt32(b); assigned[b] = true }
        for b in 0xA1...0xAC { map[b] = UInt32(b); assigned[b] = true }
        for b in 0xAE...0xFF { map[b] = UInt32(b); assigned[b] = true }
        var n: UInt32 = 0
        for b in 0..<256 where !assigned[b] {
            map[b] = 256 + n
            n += 1
        }
        return map
    }()

    /// The inverse, indexed by code point (< 0x144); -1 where no byte maps there.
    static let unicodeToByteTable: [Int16] = {
        var t = [Int16](repeating: -1, count: 0x144)
        for (b, c) in byteToUnicode.enumerated() { t[Int(c)] = Int16(b) }
        return t
    }()

    static func unicodeToByte(_ cpt: UInt32) -> UInt8? {
        guard cpt < 0x144 else { return nil }
        let b = unicodeToByteTable[Int(cpt)]
        return b < 0 ? nil : UInt8(b)
    }

    static func utf8(_ cpt: UInt32) -> [UInt8] {
        guard let s = Unicode.Scalar(cpt) else { return [0xEF, 0xBF, 0xBD] }
        return Array(String(Character(s)).utf8)
    }

    /// The UTF-8 bytes of each byte's code point.
    static let encodedByte: [[UInt8]] = byteToUnicode.map { utf8($0) }
}
