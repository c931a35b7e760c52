import ArborGGUF

/// SentencePiece-style BPE (`tokenizer.ggml.model = llama`; Gemma), as llama.cpp's
/// `llm_tokenizer_spm`: special tokens split out, spaces written as `▁` (with a leading one
/// when `add_space_prefix`), then adjacent pieces merged highest score first wherever the
/// merged text is a token; characters no token covers fall back to `<0xNN>` byte tokens.
public final class SentencePieceTokenizer: Tokenizer, VocabularyBacked {
    let vocab: Vocabulary
    /// The token of each byte (`<0xNN>`, else the one-byte string), or -1.
    let byteTokens: [Int32]

    init(metadata meta: TokenizerMetadata) throws(TokenizerError) {
        let vocab = try Vocabulary(metadata: meta, kind: .spm)
        self.vocab = vocab
        byteTokens = (0..<256).map { b in
            let hex = Array("0123456789ABCDEF".utf8)
            let t = vocab.table.lookup([0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E])
            return t >= 0 ? t : vocab.table.lookup([UInt8(b)])
        }
    }

    // MARK: Tokenizer

    /// Whether a space is put before text that starts the input or follows a special token.
    public var addSpacePrefix: Bool { vocab.addSpacePrefix }


    public func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        if addSpecial && vocab.addBOS, let bos = vocab.bos { out.append(bos) }
        var text = text
        text.withUTF8 { buf in
            var session = Session()
            var previousWasSpecial = true
            for fragment in vocab.partition(buf, parseSpecial: parseSpecial) {
                switch fragment {
                case let .token(id):
                    out.append(id)
                    previousWasSpecial = true
                case let .text(r):
                    session.text.removeAll(keepingCapacity: true)
                    if vocab.addSpacePrefix && previousWasSpecial { session.text.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for b in buf[r] {
                        if b == 0x20 { session.text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { session.text.append(b) }
                    }
                    session.tokenize(self, &out)
                    previousWasSpecial = false
                }
            }
        }
        if addSpecial && vocab.addEOS, let eos = vocab.eos { out.append(eos) }
        return out
    }

    /// One fragment's merge state: symbols are byte ranges of `text` in a linked list.
    struct Session {
        var text: [UInt8] = []
        var start: [Int32] = []
        var length: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var heap: [Bigram] = []

        struct Bigram {
            var score: Float
            var left: Int32
            var right: Int32
            var size: Int32

            /// Pops first: higher score, then the leftmost.
            @inline(__always) static func before(_ a: Bigram, _ b: Bigram) -> Bool {
                a.score != b.score ? a.score > b.score : a.left < b.left
            }
        }

        mutating func tokenize(_ t: SentencePieceTokenizer, _ out: inout [Int32]) {
            start.removeAll(keepingCapacity: true)
            length.removeAll(keepingCapacity: true)
            prev.removeAll(keepingCapacity: true)
            next.removeAll(keepingCapacity: true)
            heap.removeAll(keepingCapacity: true)
            let n = text.count
            guard n > 0 else { return }
            var offset = 0
            while offset < n {
                let lead = text[offset]
                let len = min(lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4, n - offset)
                let index = start.count
                start.append(Int32(offset))
                length.append(Int32(len))
                prev.append(Int32(index - 1))
                offset += len
                next.append(offset == n ? -1 : Int32(index + 1))
            }
            let bytes = text  // a local copy of the reference: the closure below mutates self
            bytes.withUnsafeBufferPointer { buf in
                for i in 1..<start.count { tryAdd(i - 1, i, t, buf) }
                while !heap.isEmpty {
                    let b = pop()
                    let l = Int(b.left), r = Int(b.right)
                    guard length[l] != 0, length[r] != 0, length[l] + length[r] == b.size else { continue }
                    length[l] += length[r]
                    length[r] = 0
                    next[l] = next[r]
                    if next[r] >= 0 { prev[Int(next[r])] = b.left }
                    if prev[l] >= 0 { tryAdd(Int(prev[l]), l, t, buf) }
                    if next[l] >= 0 { tryAdd(l, Int(next[l]), t, buf) }
                }
                var i = 0
                while i >= 0 {
                    let a = Int(start[i])
                    let piece = UnsafeBufferPointer(rebasing: buf[a..<(a + Int(length[i]))])
                    let id = t.vocab.table.lookup(piece)
                    if id >= 0 {
                        out.append(id)
                    } else {
                        for byte in piece {
                            let bt = t.byteTokens[Int(byte)]
                            if bt >= 0 { out.append(bt) } else if let unk = t.vocab.unk { out.append(unk) }
                        }
                    }
                    i = Int(next[i])
                }
            }
        }

        @inline(__always)
        private mutating func tryAdd(_ l: Int, _ r: Int, _ t: SentencePieceTokenizer, _ buf: UnsafeBufferPointer<UInt8>) {
            let a = Int(start[l])
            let size = Int(length[l] + length[r])
            let id = t.vocab.table.lookup(UnsafeBufferPointer(rebasing: buf[a..<(a + size)]))
            guard id >= 0 else { return }
            push(Bigram(score: t.vocab.scores[Int(id)], left: Int32(l), right: Int32(r), size: Int32(size)))
        }

        private mutating func push(_ b: Bigram) {
            heap.append(b)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard Bigram.before(heap[i], heap[p]) else { break }
                heap.swapAt(i, p)
                i = p
            }
        }

        private mutating func pop() -> Bigram {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                let n = heap.count
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < n && Bigram.before(heap[l], heap[m]) { m = l }
                    if r < n && Bigram.before(heap[r], heap[m]) { m = r }
                    if m == i { break }
                    heap.swapAt(i, m)
                    i = m
                }
            }
            return top
        }
    }
}
