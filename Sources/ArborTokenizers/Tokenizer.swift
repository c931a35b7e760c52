import ArborGGUF

/// Turns text into token ids and back, as the reference engine (llama.cpp) does for a GGUF model.
public protocol Tokenizer: Sendable {
    /// Number of token ids (`tokenizer.ggml.tokens`).
    var vocabularySize: Int { get }
    /// Beginning-of-sequence token, if the vocabulary has one.
    var bosToken: Int32? { get }
    /// End-of-sequence token, if the vocabulary has one.
    var eosToken: Int32? { get }
    /// Every token that ends generation (EOS, EOT, `<|im_end|>`, `<end_of_turn>`, ...), chosen as
    /// llama.cpp chooses them.
    var endOfGenerationTokens: Set<Int32> { get }
    /// Whether `encode(_:addSpecial: true, ...)` puts BOS first (`tokenizer.ggml.add_bos_token`).
    var addBOS: Bool { get }

    /// Token ids of `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS (and EOS) when the model asks for them.
    ///   - parseSpecial: match the text of control tokens (`<|im_start|>`, `<end_of_turn>`) as
    ///     single tokens. User-defined tokens are always matched, as in llama.cpp.
    func encode(_ text: String, addSpecial: Bool, parseSpecial: Bool) -> [Int32]
    /// The text of `ids`, control tokens left out (llama.cpp's `special = false`). Bytes that do
    /// not form valid UTF-8 become U+FFFD.
    func decode(_ ids: [Int32]) -> String
    /// The text of `ids`; with `renderSpecial`, control tokens appear as their text.
    func decode(_ ids: [Int32], renderSpecial: Bool) -> String
    /// The raw bytes a token stands for (control tokens: their text; unused tokens: nothing).
    func tokenBytes(_ id: Int32) -> [UInt8]
    /// The token's text as stored in the vocabulary (byte-level or `▁`-escaped), "" if out of range.
    func tokenText(_ id: Int32) -> String
    /// Whether the token is a control (or unknown) token: rendered only when special tokens are.
    func isControl(_ id: Int32) -> Bool
    /// The token's attributes (llama.cpp's `llama_token_attr`), empty if out of range.
    func attributes(_ id: Int32) -> TokenAttributes
}

extension Tokenizer {
    public func decode(_ ids: [Int32]) -> String { decode(ids, renderSpecial: false) }

    /// Concatenated pieces (conformers may refine, e.g. to drop a prefix space).
    public func decode(_ ids: [Int32], renderSpecial: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids where renderSpecial || !isControl(id) {
            bytes.append(contentsOf: tokenBytes(id))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// What the token contributes to output text (llama.cpp's `token_to_piece`).
    public func pieceBytes(_ id: Int32, renderSpecial: Bool = false) -> [UInt8] {
        if !renderSpecial && isControl(id) { return [] }
        return tokenBytes(id)
    }

    public func isEndOfGeneration(_ id: Int32) -> Bool { endOfGenerationTokens.contains(id) }
}

/// llama.cpp's per-token attributes.
public struct TokenAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unknown = TokenAttributes(rawValue: 1 << 0)
    public static let unused = TokenAttributes(rawValue: 1 << 1)
    public static let normal = TokenAttributes(rawValue: 1 << 2)
    public static let control = TokenAttributes(rawValue: 1 << 3)
    public static let userDefined = TokenAttributes(rawValue: 1 << 4)
    public static let byte = TokenAttributes(rawValue: 1 << 5)

    /// From a GGUF `tokenizer.ggml.token_type` value.
    public init(tokenType: Int) {
        switch tokenType {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = []  // undefined
        }
    }
}

/// Why a tokenizer could not be built.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    case missingMetadata(key: String)
    case wrongMetadataType(key: String, expected: String)
    case unknownModel(String)
    case unknownPreTokenizer(String)
    case emptyVocabulary
    case countMismatch(key: String, count: Int, vocabularySize: Int)
    case duplicateToken(text: String, firstID: Int, secondID: Int)
    case missingSpecialToken(flag: String, key: String)

    public var description: String {
        switch self {
        case let .missingMetadata(key):
            "tokenizer metadata '\(key)' is missing"
        case let .wrongMetadataType(key, expected):
            "tokenizer metadata '\(key)' should be \(expected)"
        case let .unknownModel(model):
            "unknown tokenizer model '\(model)' (tokenizer.ggml.model): Arbor knows 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)"
        case let .unknownPreTokenizer(pre):
            "unknown pre-tokenizer '\(pre)' (tokenizer.ggml.pre): Arbor knows \(BPETokenizer.supportedPreTokenizers.sorted().map { "'\($0)'" }.joined(separator: ", "))"
        case .emptyVocabulary:
            "the vocabulary (tokenizer.ggml.tokens) is empty"
        case let .countMismatch(key, count, size):
            "'\(key)' has \(count) entries but the vocabulary has \(size) tokens"
        case let .duplicateToken(text, a, b):
            "duplicate token in vocabulary: \(text.debugDescription) has ids \(a) and \(b)"
        case let .missingSpecialToken(flag, key):
            "'\(flag)' is true but '\(key)' is not set"
        }
    }
}

/// The tokenizer a GGUF file describes (`tokenizer.ggml.model`: `gpt2` or `llama`).
public func makeTokenizer(_ file: GGUFFile) throws -> any Tokenizer {
    try makeTokenizer(metadata: file.metadata)
}

/// The tokenizer described by GGUF metadata (as in `GGUFFile.metadata`).
public func makeTokenizer(metadata: [String: GGUFValue]) throws -> any Tokenizer {
    let meta = TokenizerMetadata(metadata)
    let model = try meta.requireString("tokenizer.ggml.model")
    switch model {
    case "gpt2":
        return try BPETokenizer(metadata: meta)
    case "llama":
        return try SentencePieceTokenizer(metadata: meta)
    default:
        throw TokenizerError.unknownModel(model)
    }
}

/// Typed reads of the tokenizer keys.
struct TokenizerMetadata {
    let values: [String: GGUFValue]
    init(_ values: [String: GGUFValue]) { self.values = values }

    func string(_ key: String) throws(TokenizerError) -> String? {
        guard let v = values[key] else { return nil }
        guard let s = v.string else { throw .wrongMetadataType(key: key, expected: "a string") }
        return s
    }

    func requireString(_ key: String) throws(TokenizerError) -> String {
        guard let s = try string(key) else { throw .missingMetadata(key: key) }
        return s
    }

    func bool(_ key: String) throws(TokenizerError) -> Bool? {
        guard let v = values[key] else { return nil }
        if let b = v.bool { return b }
        if let i = v.int { return i != 0 }
        throw .wrongMetadataType(key: key, expected: "a bool")
    }

    /// A token id; values that do not fit are reported as absent-with-warning by llama.cpp, here nil.
    func tokenID(_ key: String) throws(TokenizerError) -> Int? {
        guard let v = values[key] else { return nil }
        guard let i = v.int else { throw .wrongMetadataType(key: key, expected: "an integer") }
        return i
    }

    func strings(_ key: String) throws(TokenizerError) -> [String]? {
        guard let v = values[key] else { return nil }
        guard case let .array(.string(a)) = v else { throw .wrongMetadataType(key: key, expected: "an array of strings") }
        return a
    }

    func integers(_ key: String) throws(TokenizerError) -> [Int]? {
        guard let v = values[key] else { return nil }
        guard let a = v.array, a.elementType != .float32, a.elementType != .float64, let ints = a.integers else {
            throw .wrongMetadataType(key: key, expected: "an array of integers")
        }
        return ints
    }

    func floats(_ key: String) throws(TokenizerError) -> [Float]? {
        guard let v = values[key] else { return nil }
        guard let a = v.array, let f = a.floats else { throw .wrongMetadataType(key: key, expected: "an array of numbers") }
        return f
    }
}

extension Tokenizer {
    /// A 64-bit FNV-1a hash of everything that decides what a token id means: each entry's bytes
    /// and attributes, BOS/EOS, whether BOS is added, and the end-of-generation set. Two models
    /// can share draft trees (and a client and server can talk in token ids) only when their
    /// fingerprints are equal.
    public var vocabularyFingerprint: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        func mix64(_ v: UInt64) { for i in 0..<8 { mix(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        mix64(UInt64(vocabularySize))
        for id in 0..<Int32(vocabularySize) {
            let bytes = tokenBytes(id)
            mix64(UInt64(bytes.count))
            for b in bytes { mix(b) }
            mix64(UInt64(truncatingIfNeeded: attributes(id).rawValue))
        }
        mix64(UInt64(bitPattern: Int64(bosToken ?? -1)))
        mix64(UInt64(bitPattern: Int64(eosToken ?? -1)))
        mix(addBOS ? 1 : 0)
        for t in endOfGenerationTokens.sorted() { mix64(UInt64(bitPattern: Int64(t))) }
        return h
    }
}
