/// The three Unicode properties the byte-level pre-tokenizers look at, as llama.cpp's
/// `unicode_cpt_flags` has them: `\p{L}`, `\p{N}` and `\s` (the White_Space property).
///
/// Every valid code point has at least one general category, so "in range" is all the other
/// tests of llama.cpp's scanners (`flags.as_uint() != 0`) amount to; out-of-range positions are
/// represented by `CodepointFlags.none`.
struct CodepointFlags: Equatable {
    var raw: UInt8

    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4
    /// Set for every real code point.
    static let defined: UInt8 = 8

    static let none = CodepointFlags(raw: 0)

    @inline(__always) var isLetter: Bool { raw & Self.letter != 0 }
    @inline(__always) var isNumber: Bool { raw & Self.number != 0 }
    @inline(__always) var isWhitespace: Bool { raw & Self.whitespace != 0 }
    @inline(__always) var isDefined: Bool { raw != 0 }

    @inline(__always) static func of(_ cpt: UInt32) -> CodepointFlags {
        if cpt < 0x1_0000 { return CodepointFlags(raw: bmpFlagTable[Int(cpt)]) }
        return CodepointFlags(raw: computeFlags(cpt))
    }

    static func computeFlags(_ cpt: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(cpt) else {
            // Surrogate code points never come out of valid UTF-8; llama.cpp classes them as \p{C}.
            return cpt < 0x11_0000 ? defined : 0
        }
        var r = defined
        // llama.cpp's tables are Unicode 15.1: later code points are unassigned (\p{C}) there.
        if let age = scalar.properties.age, age.major > 15 || (age.major == 15 && age.minor > 1) { return r }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            r |= letter
        case .decimalNumber, .letterNumber, .otherNumber:
            r |= number
        default:
            break
        }
        if scalar.properties.isWhitespace { r |= whitespace }
        return r
    }
}

/// Flags of the Basic Multilingual Plane, computed once.
let bmpFlagTable: [UInt8] = (0..<0x1_0000).map { CodepointFlags.computeFlags(UInt32($0)) }

/// Decodes valid UTF-8 into code points and the byte offset where each starts (plus the end).
/// Bytes that are not valid UTF-8 decode to U+FFFD one byte at a time, like llama.cpp's
/// `unicode_cpts_from_utf8`.
@inline(__always)
func decodeScalars(_ bytes: UnsafeBufferPointer<UInt8>, scalars: inout [UInt32], offsets: inout [Int32]) {
    scalars.removeAll(keepingCapacity: true)
    offsets.removeAll(keepingCapacity: true)
    scalars.reserveCapacity(bytes.count)
    offsets.reserveCapacity(bytes.count + 1)
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = UInt32(bytes[i])
        offsets.append(Int32(i))
        if b0 < 0x80 {
            scalars.append(b0)
            i += 1
            continue
        }
        var len = 0
        var cpt: UInt32 = 0
        if b0 & 0xE0 == 0xC0 { len = 2; cpt = b0 & 0x1F }
        else if b0 & 0xF0 == 0xE0 { len = 3; cpt = b0 & 0x0F }
        else if b0 & 0xF8 == 0xF0 { len = 4; cpt = b0 & 0x07 }
        var ok = len > 0 && i + len <= n
        if ok {
            for k in 1..<len {
                let b = UInt32(bytes[i + k])
                if b & 0xC0 != 0x80 { ok = false; break }
                cpt = (cpt << 6) | (b & 0x3F)
            }
        }
        if ok {
            scalars.append(cpt)
            i += len
        } else {
            scalars.append(0xFFFD)
            i += 1
        }
    }
    offsets.append(Int32(n))
}
