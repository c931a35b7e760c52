import ArborGGUF

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`), as llama.cpp's `llm_tokenizer_bpe`: special
/// tokens split out, the pre-tokenizer cuts words, each word's bytes become GPT-2 byte symbols,
/// and merges apply lowest rank first (leftmost first among equal ranks).
public final class BPETokenizer: Tokenizer, VocabularyBacked {
    /// Values of `tokenizer.ggml.pre` this tokenizer implements.
    public static let supportedPreTokenizers: Set<String> = ["smollm", "qwen2", "deepseek-r1-qwen"]

    let vocab: Vocabulary
    let preTokenizer: PreTokenizer
    /// The vocabulary's strings, then any merge operand or result missing from it (ids past the
    /// vocabulary: such symbols are emitted byte by byte, as llama.cpp does).
    let symbols: ByteStringTable
    /// The symbol of each byte's GPT-2 code point.
    let byteSymbols: [Int32]
    /// `left << 32 | right` → `rank << 32 | result`.
    let merges: [UInt64: UInt64]
    /// The vocabulary id of each single-byte string, or -1 (llama.cpp's last-resort fallback).
    let singleByteTokens: [Int32]
    let cache = WordCache()
    /// The `tokenizer.ggml.pre` value.
    public let preTokenizerName: String

    init(metadata meta: TokenizerMetadata) throws(TokenizerError) {
        let pre = try meta.string("tokenizer.ggml.pre") ?? "default"
        switch pre {
        case "smollm": preTokenizer = .smollm
        case "qwen2", "deepseek-r1-qwen": preTokenizer = .qwen2
        default: throw .unknownPreTokenizer(pre)
        }
        preTokenizerName = pre
        let vocab = try Vocabulary(metadata: meta, kind: .bpe)
        self.vocab = vocab
        guard let mergeList = try meta.strings("tokenizer.ggml.merges") else {
            throw .missingMetadata(key: "tokenizer.ggml.merges")
        }

        var symbols = vocab.table
        byteSymbols = ByteLevel.encodedByte.map { symbols.intern($0) }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        var joined: [UInt8] = []
        for (rank, merge) in mergeList.enumerated() {
            // "first second", split at the first space after the first byte (as llama.cpp).
            var merge = merge
            merge.withUTF8 { bytes in
                guard bytes.count > 2, let space = bytes[1...].firstIndex(of: 0x20), space + 1 < bytes.count else { return }
                let first = UnsafeBufferPointer(rebasing: bytes[..<space])
                let second = UnsafeBufferPointer(rebasing: bytes[(space + 1)...])
                let l = symbols.intern(first), r = symbols.intern(second)
                let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
                guard merges[key] == nil else { return }  // the first rank of a pair wins
                joined.removeAll(keepingCapacity: true)
                joined.append(contentsOf: first)
                joined.append(contentsOf: second)
                let result = joined.withUnsafeBufferPointer { symbols.intern($0) }
                merges[key] = UInt64(rank) << 32 | UInt64(UInt32(result))
            }
        }
        self.symbols = symbols
        self.merges = merges
        singleByteTokens = (0..<256).map { vocab.table.lookup([UInt8($0)]) }
    }

    // MARK: Tokenizer



    public func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        if addSpecial && vocab.addBOS, let bos = vocab.bos { out.append(bos) }
        var text = text
        text.withUTF8 { buf in
            var scratch = Scratch()
            for fragment in vocab.partition(buf, parseSpecial: parseSpecial) {
                switch fragment {
                case let .token(id): out.append(id)
                case let .text(r): encodeFragment(UnsafeBufferPointer(rebasing: buf[r]), &scratch, &out)
                }
            }
        }
        if addSpecial && vocab.addEOS, let eos = vocab.eos { out.append(eos) }
        return out
    }

    // MARK: Encoding

    struct Scratch {
        var scalars: [UInt32] = []
        var offsets: [Int32] = []
        var ends: [Int32] = []
        var merger = Merger()
    }

    private func encodeFragment(_ bytes: UnsafeBufferPointer<UInt8>, _ s: inout Scratch, _ out: inout [Int32]) {
        decodeScalars(bytes, scalars: &s.scalars, offsets: &s.offsets)
        s.scalars.withUnsafeBufferPointer { preTokenizer.split($0, into: &s.ends) }
        var start = 0
        for end in s.ends {
            let a = Int(s.offsets[start]), b = Int(s.offsets[Int(end)])
            encodeWord(UnsafeBufferPointer(rebasing: bytes[a..<b]), &s.merger, &out)
            start = Int(end)
        }
    }

    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>, _ merger: inout Merger, _ out: inout [Int32]) {
        if word.count == 1 {
            emit(byteSymbols[Int(word[0])], &out)
            return
        }
        let cacheable = word.count <= 128
        let key = cacheable ? Array(word) : []
        if cacheable, let hit = cache.get(key) {
            out.append(contentsOf: hit)
            return
        }
        var ids: [Int32] = []
        merger.run(word, self)
        var i = merger.first
        while i >= 0 {
            emit(merger.symbol[i], &ids)
            i = Int(merger.next[i])
        }
        if cacheable { cache.set(key, ids) }
        out.append(contentsOf: ids)
    }

    @inline(__always)
    private func emit(_ symbol: Int32, _ out: inout [Int32]) {
        if Int(symbol) < vocab.count {
            out.append(symbol)
            return
        }
        // Not a token: llama.cpp looks up each byte of its (byte-level) text on its own.
        for b in symbols.bytes(of: symbol) {
            let t = singleByteTokens[Int(b)]
            if t >= 0 { out.append(t) }
        }
    }

    @inline(__always)
    func merge(_ left: Int32, _ right: Int32) -> (rank: Int32, result: Int32)? {
        guard let v = merges[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))] else { return nil }
        return (Int32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v & 0xFFFF_FFFF))
    }
}

/// The merge loop of one word: a doubly linked list of symbols and a min-heap of candidate
/// pairs ordered by (rank, left position); stale candidates are skipped when popped.
struct Merger {
    var symbol: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var first = 0
    private var heap: [Candidate] = []

    struct Candidate {
        var rank: Int32
        var left: Int32
        var right: Int32
        var leftSymbol: Int32
        var rightSymbol: Int32
        var result: Int32

        @inline(__always) static func < (a: Candidate, b: Candidate) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.left < b.left
        }
    }

    mutating func run(_ word: UnsafeBufferPointer<UInt8>, _ t: BPETokenizer) {
        let n = word.count
        symbol.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            symbol.append(t.byteSymbols[Int(word[i])])
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        first = 0
        for i in 0..<(n - 1) { consider(i, i + 1, t) }
        while !heap.isEmpty {
            let c = pop()
            let l = Int(c.left), r = Int(c.right)
            guard symbol[l] == c.leftSymbol, symbol[r] == c.rightSymbol, next[l] == c.right else { continue }
            symbol[l] = c.result
            symbol[r] = -1
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = c.left }
            if prev[l] >= 0 { consider(Int(prev[l]), l, t) }
            if next[l] >= 0 { consider(l, Int(next[l]), t) }
        }
    }

    @inline(__always)
    private mutating func consider(_ l: Int, _ r: Int, _ t: BPETokenizer) {
        guard let m = t.merge(symbol[l], symbol[r]) else { return }
        push(Candidate(rank: m.rank, left: Int32(l), right: Int32(r), leftSymbol: symbol[l], rightSymbol: symbol[r], result: m.result))
    }

    private mutating func push(_ c: Candidate) {
        heap.append(c)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard heap[i] < heap[p] else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    private mutating func pop() -> Candidate {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && heap[l] < heap[m] { m = l }
                if r < n && heap[r] < heap[m] { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
