/// The vocabulary both tokenizers share: token texts and attributes, the special token ids, the
/// end-of-generation set and each token's piece, built from GGUF metadata the way llama.cpp's
/// `llama_vocab::impl::load` builds them (including its text-based fix-ups of special tokens).
struct Vocabulary: Sendable {
    enum Kind: Sendable { case bpe, spm }

    let kind: Kind
    /// Token texts as stored (an empty text is replaced by `[EMPTY_<id>]`, as in llama.cpp).
    let texts: [String]
    /// Token text bytes ↔ ids.
    let table: ByteStringTable
    let scores: [Float]
    private(set) var attributes: [TokenAttributes]

    private(set) var bos: Int32?
    private(set) var eos: Int32?
    private(set) var eot: Int32?
    private(set) var eom: Int32?
    private(set) var unk: Int32?
    private(set) var sep: Int32?
    private(set) var pad: Int32?
    private(set) var mask: Int32?
    private(set) var fimPre: Int32?
    private(set) var fimSuf: Int32?
    private(set) var fimMid: Int32?
    private(set) var fimPad: Int32?
    private(set) var fimRep: Int32?
    private(set) var fimSep: Int32?

    let addBOS: Bool
    let addEOS: Bool
    /// SentencePiece: prefix each text fragment that follows a special token (or starts the
    /// text) with a space. Also makes `decode` drop one leading space.
    let addSpacePrefix: Bool

    private(set) var endOfGeneration: Set<Int32> = []
    /// Control, user-defined and unknown tokens, longest text first: the order in which their
    /// text is split out of the input before tokenizing.
    private(set) var specialTokens: [Int32] = []
    /// Every token's piece with special tokens rendered (`token_to_piece(special: true)`).
    private(set) var pieceStorage: [UInt8] = []
    private(set) var pieceOffsets: [Int32] = []

    var count: Int { texts.count }

    init(metadata meta: TokenizerMetadata, kind: Kind) throws(TokenizerError) {
        self.kind = kind
        guard var tokens = try meta.strings("tokenizer.ggml.tokens") else {
            throw .missingMetadata(key: "tokenizer.ggml.tokens")
        }
        guard !tokens.isEmpty else { throw .emptyVocabulary }
        let n = tokens.count

        var scores = [Float](repeating: 0, count: n)
        if let s = try meta.floats("tokenizer.ggml.scores") {
            guard s.count >= n else { throw .countMismatch(key: "tokenizer.ggml.scores", count: s.count, vocabularySize: n) }
            scores = Array(s[0..<n])
        }
        self.scores = scores

        var attributes = [TokenAttributes](repeating: .normal, count: n)
        if let types = try meta.integers("tokenizer.ggml.token_type") {
            guard types.count >= n else {
                throw .countMismatch(key: "tokenizer.ggml.token_type", count: types.count, vocabularySize: n)
            }
            for i in 0..<n { attributes[i] = TokenAttributes(tokenType: types[i]) }
        }

        var table = ByteStringTable(capacity: n)
        for i in 0..<n {
            if tokens[i].isEmpty { tokens[i] = "[EMPTY_\(i)]" }
            let bytes = Array(tokens[i].utf8)
            let existing = table.lookup(bytes)
            if existing >= 0 { throw .duplicateToken(text: tokens[i], firstID: Int(existing), secondID: i) }
            table.append(bytes)
        }
        self.texts = tokens
        self.table = table
        self.attributes = attributes

        // Defaults of llama.cpp for the vocabulary type, then the file's values.
        var addSpacePrefix: Bool
        var addBOS: Bool
        switch kind {
        case .spm:
            bos = 1; eos = 2; unk = 0
            addSpacePrefix = true; addBOS = true
        case .bpe:
            bos = 11; eos = 11
            addSpacePrefix = false; addBOS = false
        }
        var addEOS = false
        if let v = try meta.bool("tokenizer.ggml.add_space_prefix") { addSpacePrefix = v }

        func inRange(_ id: Int32?) -> Int32? { id.flatMap { $0 >= 0 && Int($0) < n ? $0 : nil } }
        bos = inRange(bos); eos = inRange(eos); unk = inRange(unk)
        func read(_ key: String, _ id: inout Int32?) throws(TokenizerError) {
            guard let v = try meta.tokenID(key) else { return }
            if v >= 0 && v < n { id = Int32(v) }  // llama.cpp keeps the default for a bad id
        }
        try read("tokenizer.ggml.bos_token_id", &bos)
        try read("tokenizer.ggml.eos_token_id", &eos)
        try read("tokenizer.ggml.eot_token_id", &eot)
        try read("tokenizer.ggml.eom_token_id", &eom)
        try read("tokenizer.ggml.unknown_token_id", &unk)
        try read("tokenizer.ggml.seperator_token_id", &sep)
        try read("tokenizer.ggml.padding_token_id", &pad)
        try read("tokenizer.ggml.mask_token_id", &mask)
        try read("tokenizer.ggml.fim_pre_token_id", &fimPre)
        try read("tokenizer.ggml.fim_suf_token_id", &fimSuf)
        try read("tokenizer.ggml.fim_mid_token_id", &fimMid)
        try read("tokenizer.ggml.fim_pad_token_id", &fimPad)
        try read("tokenizer.ggml.fim_rep_token_id", &fimRep)
        try read("tokenizer.ggml.fim_sep_token_id", &fimSep)
        try read("tokenizer.ggml.prefix_token_id", &fimPre)
        try read("tokenizer.ggml.suffix_token_id", &fimSuf)
        try read("tokenizer.ggml.middle_token_id", &fimMid)

        if let v = try meta.bool("tokenizer.ggml.add_bos_token") { addBOS = v }
        if let v = try meta.bool("tokenizer.ggml.add_eos_token") { addEOS = v }
        if addBOS && bos == nil { throw .missingSpecialToken(flag: "tokenizer.ggml.add_bos_token", key: "tokenizer.ggml.bos_token_id") }
        if addEOS && eos == nil { throw .missingSpecialToken(flag: "tokenizer.ggml.add_eos_token", key: "tokenizer.ggml.eos_token_id") }
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix

        detectSpecialTokens()
        buildSpecialTokenOrder()
        buildPieces()
    }

    // MARK: llama.cpp's text-based special-token fix-ups

    private static let eotTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
    ]
    private static let fimPreTexts: Set<String> = [
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>",
    ]
    private static let fimSufTexts: Set<String> = [
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>",
    ]
    private static let fimMidTexts: Set<String> = [
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>",
    ]
    private static let fimPadTexts: Set<String> = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]
    private static let fimRepTexts: Set<String> = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]
    private static let fimSepTexts: Set<String> = ["<|file_sep|>"]
    private static let eogTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
    ]
    private static let alwaysRenderedTexts: Set<String> = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]

    /// Mirrors the auto-detection in `llama_vocab::impl::load`. Where llama.cpp takes the first
    /// match in hash-map order, this takes the lowest id (the sets of end-of-generation tokens
    /// do not depend on that choice).
    private mutating func detectSpecialTokens() {
        /// The ids of those texts that are tokens, lowest first.
        func ids(_ texts: Set<String>) -> [Int] {
            texts.compactMap { t -> Int? in
                let id = table.lookup(Array(t.utf8))
                return id >= 0 ? Int(id) : nil
            }.sorted()
        }
        func forceControl(_ id: Int) { attributes[id].insert(.control) }
        func detect(_ slot: inout Int32?, _ texts: Set<String>) {
            guard slot == nil, let i = ids(texts).first else { return }
            slot = Int32(i)
            forceControl(i)
        }
        detect(&eot, Self.eotTexts)
        detect(&eom, ["<|eom_id|>"])
        detect(&fimPre, Self.fimPreTexts)
        detect(&fimSuf, Self.fimSufTexts)
        detect(&fimMid, Self.fimMidTexts)
        detect(&fimPad, Self.fimPadTexts)
        detect(&fimRep, Self.fimRepTexts)
        detect(&fimSep, Self.fimSepTexts)

        let unused = Array("unused".utf8)
        for i in 0..<count where attributes[i].contains(.control) && table.bytes(of: Int32(i)).contains(unused) {
            attributes[i].insert(.unused)
        }

        var eog = Set<Int32>()
        for id in [fimPad, fimRep, fimSep] { if let id { eog.insert(id) } }
        for i in ids(Self.eogTexts) {
            eog.insert(Int32(i))
            forceControl(i)
        }
        for i in ids(Self.alwaysRenderedTexts) {
            attributes[i] = .userDefined
        }
        for id in [eos, eot, eom] { if let id { eog.insert(id) } }

        // o200k_harmony / solar-open: "<|end|>" is not an end of generation there.
        let eogText = Set(eog.map { texts[Int($0)] })
        if (eogText.contains("<|return|>") && eogText.contains("<|call|>") && eogText.contains("<|end|>"))
            || ((eogText.contains("<|call|>") || eogText.contains("<|calls|>")) && eogText.contains("<|flush|>") && eogText.contains("<|end|>")) {
            for id in eog where texts[Int(id)] == "<|end|>" {
                eog.remove(id)
                attributes[Int(id)] = .userDefined
            }
        }
        // gemma4 / paddleocr: "</s>" is not an end of generation there.
        if eogText.contains("<|tool_response>") && eogText.contains("</s>") {
            for id in eog where texts[Int(id)] == "</s>" {
                eog.remove(id)
                attributes[Int(id)] = .normal
            }
        }
        endOfGeneration = eog
    }

    private mutating func buildSpecialTokenOrder() {
        let special: TokenAttributes = [.control, .userDefined, .unknown]
        var ids: [Int32] = []
        for i in 0..<count where !attributes[i].isDisjoint(with: special) { ids.append(Int32(i)) }
        let t = table
        ids.sort { a, b in
            let la = t.byteCount(of: a), lb = t.byteCount(of: b)
            return la != lb ? la > lb : a < b
        }
        specialTokens = ids
    }

    // MARK: Pieces

    private mutating func buildPieces() {
        var storage: [UInt8] = []
        storage.reserveCapacity(table.storage.count)
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(count + 1)
        for id in 0..<count {
            appendPiece(Int32(id), to: &storage)
            offsets.append(Int32(storage.count))
        }
        pieceStorage = storage
        pieceOffsets = offsets
    }

    /// llama.cpp's `token_to_piece` with `special = true`.
    private func appendPiece(_ id: Int32, to out: inout [UInt8]) {
        let attr = attributes[Int(id)]
        let text = table.bytes(of: id)
        if !attr.isDisjoint(with: [.unknown, .control, .userDefined]) {
            out.append(contentsOf: text)
        } else if attr.contains(.normal) {
            switch kind {
            case .spm: Self.appendUnescapingSpaces(text, to: &out)
            case .bpe: Self.appendByteLevelDecoded(text, to: &out)
            }
        } else if attr.contains(.byte) {
            if let b = Self.byteValue(ofByteToken: text) { out.append(b) }
        }
        // unused / undefined tokens render as nothing
    }

    /// The byte of a `<0xNN>` token.
    static func byteValue(ofByteToken text: ArraySlice<UInt8>) -> UInt8? {
        guard text.count == 6 else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        let s = text.startIndex
        guard let h = hex(text[s + 3]), let l = hex(text[s + 4]) else { return nil }
        return h << 4 | l
    }

    static func appendUnescapingSpaces(_ text: ArraySlice<UInt8>, to out: inout [UInt8]) {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == 0xE2 && i + 2 < text.endIndex && text[i + 1] == 0x96 && text[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(text[i])
                i += 1
            }
        }
    }

    /// llama.cpp's `llama_decode_text`: each code point of a byte-level token back to its byte.
    static func appendByteLevelDecoded(_ text: ArraySlice<UInt8>, to out: inout [UInt8]) {
        var i = text.startIndex
        while i < text.endIndex {
            let b0 = text[i]
            var cpt = UInt32(b0), len = 1
            if b0 >= 0xC0 && b0 < 0xE0 && i + 1 < text.endIndex && text[i + 1] & 0xC0 == 0x80 {
                cpt = (UInt32(b0 & 0x1F) << 6) | UInt32(text[i + 1] & 0x3F)
                len = 2
            } else if b0 >= 0x80 {
                // Not a code point of the byte-level alphabet (which is all below U+0800).
                var scalars: [UInt32] = []
                var offsets: [Int32] = []
                Array(text[i...]).withUnsafeBufferPointer { decodeScalars($0, scalars: &scalars, offsets: &offsets) }
                cpt = scalars[0]
                len = Int(offsets[1])
            }
            if let b = ByteLevel.unicodeToByte(cpt) {
                out.append(b)
            } else {
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for u in ByteLevel.utf8(cpt) {
                    let h = String(u, radix: 16)
                    out.append(contentsOf: Array((h.count == 1 ? "0" + h : h).utf8))
                }
                out.append(contentsOf: text)
                out.append(UInt8(ascii: "]"))
            }
            i += len
        }
    }

    // MARK: Queries

    func isValid(_ id: Int32) -> Bool { id >= 0 && Int(id) < count }

    func piece(_ id: Int32) -> ArraySlice<UInt8> {
        guard isValid(id) else { return [] }
        return pieceStorage[Int(pieceOffsets[Int(id)])..<Int(pieceOffsets[Int(id) + 1])]
    }

    func isControl(_ id: Int32) -> Bool {
        isValid(id) && !attributes[Int(id)].isDisjoint(with: [.control, .unknown])
    }

    /// llama.cpp's `detokenize(remove_special: false, unparse_special: renderSpecial)`.
    func decode(_ ids: [Int32], renderSpecial: Bool) -> String {
        var out: [UInt8] = []
        var removeSpace = addSpacePrefix
        for id in ids {
            guard isValid(id), renderSpecial || !isControl(id) else { removeSpace = false; continue }
            var p = piece(id)
            if removeSpace, p.first == 0x20 { p = p.dropFirst() }
            removeSpace = false
            out.append(contentsOf: p)
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension ArraySlice where Element == UInt8 {
    /// Whether `needle` occurs in these bytes.
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= count else { return false }
        var i = startIndex
        while i + needle.count <= endIndex {
            if self[i] == needle[0] && self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
