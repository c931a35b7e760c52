/// Turns token ids, fed one at a time, into text without ever cutting a UTF-8 sequence: bytes of
/// a character split across tokens (emoji, CJK via byte tokens) are held until it is complete.
///
/// ```swift
/// var detok = StreamingDetokenizer(tokenizer: tokenizer)
/// for id in ids { print(detok.append(id), terminator: "") }
/// print(detok.finish())
/// ```
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: any Tokenizer
    /// Whether control tokens (`<|im_end|>`, `<bos>`) appear as their text. Default: skipped, as
    /// llama.cpp's `special = false`.
    public var renderSpecial: Bool
    /// Bytes of an incomplete character waiting for the rest.
    public private(set) var pending: [UInt8] = []

    public init(tokenizer: any Tokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
    }

    /// Add one token; returns the text that is now complete (possibly "").
    public mutating func append(_ id: Int32) -> String {
        if !renderSpecial && tokenizer.isControl(id) { return "" }
        return append(bytes: tokenizer.tokenBytes(id))
    }

    /// Same as `append(_:)`.
    public mutating func feed(_ id: Int32) -> String { append(id) }

    /// Add raw bytes; returns the text that is now complete.
    public mutating func append<S: Sequence>(bytes: S) -> String where S.Element == UInt8 {
        pending.append(contentsOf: bytes)
        let keep = Self.incompleteSuffixLength(pending)
        guard keep < pending.count else { return "" }
        let text = String(decoding: pending[..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }

    /// Flush what is held: an incomplete sequence becomes U+FFFD.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// How many bytes at the end of `bytes` are a valid but unfinished UTF-8 sequence (0–3).
    public static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        var i = n - 1
        // Walk back over at most 3 continuation bytes to the lead byte.
        while i >= 0 && i >= n - 4 && bytes[i] & 0xC0 == 0x80 { i -= 1 }
        guard i >= 0, i >= n - 4 else { return 0 }
        let lead = bytes[i]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return 0
        }
        let have = n - i
        guard have < need else { return 0 }
        // The bytes so far must be able to continue into a valid character.
        if have >= 2 {
            let b1 = bytes[i + 1]
            switch lead {
            case 0xE0: if b1 < 0xA0 { return 0 }
            case 0xED: if b1 > 0x9F { return 0 }
            case 0xF0: if b1 < 0x90 { return 0 }
            case 0xF4: if b1 > 0x8F { return 0 }
            default: break
            }
        }
        return have
    }
}
