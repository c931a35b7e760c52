/// The rules that cut text into words before BPE merges run (`tokenizer.ggml.pre`).
///
/// Hand-written scanners with llama.cpp's exact behaviour (its `unicode_regex_split_custom_*`
/// functions), not a regex engine: positions past the end of a segment read as "no character",
/// so a segment boundary ends a run and `\s+(?!\S)` keeps the whole trailing run.
enum PreTokenizer: Sendable {
    /// `\p{N}` alone first, then GPT-2's
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// on the text between numbers (StarCoder, SmolLM).
    case smollm
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case qwen2

    /// Word ends (exclusive code-point indices, increasing, the last one `cpts.count`).
    func split(_ cpts: UnsafeBufferPointer<UInt32>, into ends: inout [Int32]) {
        ends.removeAll(keepingCapacity: true)
        guard !cpts.isEmpty else { return }
        var s = Splitter(cpts: cpts, ends: ends)
        switch self {
        case .qwen2:
            s.qwen2(0, cpts.count)
        case .smollm:
            var start = 0
            for i in 0..<cpts.count where CodepointFlags.of(cpts[i]).isNumber {
                if i > start { s.gpt2(start, i) }
                s.add(i + 1)
                start = i + 1
            }
            if start < cpts.count { s.gpt2(start, cpts.count) }
        }
        ends = s.ends
    }
}

private struct Splitter {
    let cpts: UnsafeBufferPointer<UInt32>
    var ends: [Int32]
    var prevEnd = 0
    var lo = 0, hi = 0

    init(cpts: UnsafeBufferPointer<UInt32>, ends: [Int32]) {
        self.cpts = cpts
        self.ends = ends
    }

    static let outOfRange: UInt32 = 0xFFFF_FFFF

    @inline(__always) func cpt(_ i: Int) -> UInt32 { i >= lo && i < hi ? cpts[i] : Self.outOfRange }
    @inline(__always) func flags(_ i: Int) -> CodepointFlags { i >= lo && i < hi ? CodepointFlags.of(cpts[i]) : .none }

    @inline(__always) mutating func add(_ end: Int) {
        if end > prevEnd { ends.append(Int32(end)) }
        prevEnd = end
    }

    @inline(__always) static func isPlain(_ f: CodepointFlags) -> Bool {
        f.isDefined && !f.isWhitespace && !f.isLetter && !f.isNumber
    }

    @inline(__always) static func lowerASCII(_ c: UInt32) -> UInt32 { c >= 0x41 && c <= 0x5A ? c + 32 : c }

    /// `unicode_regex_split_custom_gpt2` on `[start, end)`.
    mutating func gpt2(_ start: Int, _ end: Int) {
        lo = start; hi = end; prevEnd = start
        var pos = start
        while pos < end {
            let c = cpts[pos]
            let f = flags(pos)
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == 0x27 && pos + 1 < end {
                let n1 = cpts[pos + 1]
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {  // s t m d
                    pos += 2; add(pos); continue
                }
                if pos + 2 < end {
                    let n2 = cpts[pos + 2]
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {  // re ve ll
                        pos += 3; add(pos); continue
                    }
                }
            }
            let space = c == 0x20
            let f2 = space ? flags(pos + 1) : f
            // ' ?\p{L}+'
            if f2.isLetter {
                if space { pos += 1 }
                while flags(pos).isLetter { pos += 1 }
                add(pos); continue
            }
            // ' ?\p{N}+'
            if f2.isNumber {
                if space { pos += 1 }
                while flags(pos).isNumber { pos += 1 }
                add(pos); continue
            }
            // ' ?[^\s\p{L}\p{N}]+'
            if Self.isPlain(f2) {
                if space { pos += 1 }
                while Self.isPlain(flags(pos)) { pos += 1 }
                add(pos); continue
            }
            var spaces = 0
            while flags(pos + spaces).isWhitespace { spaces += 1 }
            // '\s+(?!\S)'
            if spaces > 1 && cpt(pos + spaces) != Self.outOfRange {
                pos += spaces - 1; add(pos); continue
            }
            // '\s+'
            if spaces > 0 {
                pos += spaces; add(pos); continue
            }
            pos += 1; add(pos)
        }
    }

    /// The Qwen2 rules (llama.cpp's LLAMA3 scanner with a single `\p{N}`) on `[start, end)`.
    mutating func qwen2(_ start: Int, _ end: Int) {
        lo = start; hi = end; prevEnd = start
        var pos = start
        while pos < end {
            let c = cpts[pos]
            let f = flags(pos)
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == 0x27 && pos + 1 < end {
                let n1 = Self.lowerASCII(cpts[pos + 1])
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    pos += 2; add(pos); continue
                }
                if pos + 2 < end {
                    let n2 = Self.lowerASCII(cpts[pos + 2])
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                        pos += 3; add(pos); continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == 0x0D || c == 0x0A || f.isNumber) {
                if f.isLetter || flags(pos + 1).isLetter {
                    pos += 1
                    while flags(pos).isLetter { pos += 1 }
                    add(pos); continue
                }
            }
            // \p{N}
            if f.isNumber {
                pos += 1; add(pos); continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let space = c == 0x20
            let f2 = space ? flags(pos + 1) : f
            if !f2.isWhitespace && !f2.isLetter && !f2.isNumber && f.isDefined {
                if space { pos += 1 }
                while Self.isPlain(flags(pos)) { pos += 1 }
                while true {
                    let c2 = cpt(pos)
                    guard c2 == 0x0D || c2 == 0x0A else { break }
                    pos += 1
                }
                add(pos); continue
            }
            var spaces = 0
            var afterLineEnd = 0
            while flags(pos + spaces).isWhitespace {
                let c2 = cpts[pos + spaces]
                if c2 == 0x0D || c2 == 0x0A { afterLineEnd = pos + spaces + 1 }
                spaces += 1
            }
            // \s*[\r\n]+
            if afterLineEnd > 0 {
                pos = afterLineEnd; add(pos); continue
            }
            // \s+(?!\S)
            if spaces > 1 && cpt(pos + spaces) != Self.outOfRange {
                pos += spaces - 1; add(pos); continue
            }
            // \s+
            if spaces > 0 {
                pos += spaces; add(pos); continue
            }
            pos += 1; add(pos)
        }
    }
}
