/// Metadata keys Arbor reads. `{arch}` stands for the value of `general.architecture`.
public enum GGUFKey: String, Sendable, CaseIterable {
    case architecture = "general.architecture"
    case name = "general.name"
    case alignment = "general.alignment"
    case fileType = "general.file_type"
    case quantizationVersion = "general.quantization_version"

    case contextLength = "{arch}.context_length"
    case embeddingLength = "{arch}.embedding_length"
    case blockCount = "{arch}.block_count"
    case feedForwardLength = "{arch}.feed_forward_length"
    case headCount = "{arch}.attention.head_count"
    case headCountKV = "{arch}.attention.head_count_kv"
    case keyLength = "{arch}.attention.key_length"
    case valueLength = "{arch}.attention.value_length"
    case layerNormRMSEpsilon = "{arch}.attention.layer_norm_rms_epsilon"
    case slidingWindow = "{arch}.attention.sliding_window"
    case slidingWindowPattern = "{arch}.attention.sliding_window_pattern"
    case ropeFreqBase = "{arch}.rope.freq_base"
    case ropeDimensionCount = "{arch}.rope.dimension_count"
    case ropeScalingType = "{arch}.rope.scaling.type"
    case ropeScalingFactor = "{arch}.rope.scaling.factor"
    case vocabSize = "{arch}.vocab_size"
    case finalLogitSoftcapping = "{arch}.final_logit_softcapping"
    case attnLogitSoftcapping = "{arch}.attn_logit_softcapping"

    case tokenizerModel = "tokenizer.ggml.model"
    case tokenizerPre = "tokenizer.ggml.pre"
    case tokenizerTokens = "tokenizer.ggml.tokens"
    case tokenizerScores = "tokenizer.ggml.scores"
    case tokenizerTokenType = "tokenizer.ggml.token_type"
    case tokenizerMerges = "tokenizer.ggml.merges"
    case bosTokenID = "tokenizer.ggml.bos_token_id"
    case eosTokenID = "tokenizer.ggml.eos_token_id"
    case eotTokenID = "tokenizer.ggml.eot_token_id"
    case eomTokenID = "tokenizer.ggml.eom_token_id"
    case unknownTokenID = "tokenizer.ggml.unknown_token_id"
    case paddingTokenID = "tokenizer.ggml.padding_token_id"
    case addBOS = "tokenizer.ggml.add_bos_token"
    case addEOS = "tokenizer.ggml.add_eos_token"
    case addSpacePrefix = "tokenizer.ggml.add_space_prefix"
    case chatTemplate = "tokenizer.chat_template"

    /// The concrete key for an architecture.
    public func name(architecture: String) -> String {
        rawValue.hasPrefix("{arch}") ? architecture + rawValue.dropFirst(6) : rawValue
    }
}

extension GGUFFile {
    /// `general.architecture`, or "" if missing.
    public var architecture: String { metadata[GGUFKey.architecture.rawValue]?.string ?? "" }

    /// The raw value for a known key, or nil if absent.
    public func value(_ key: GGUFKey) -> GGUFValue? {
        metadata[key.name(architecture: architecture)]
    }

    private func typed<T>(_ key: GGUFKey, _ expected: String, _ get: (GGUFValue) -> T?) throws(GGUFError) -> T? {
        guard let v = value(key) else { return nil }
        guard let t = get(v) else {
            throw .wrongValueType(path: path, key: key.name(architecture: architecture), expected: expected, found: v.type.description)
        }
        return t
    }

    private func required<T>(_ key: GGUFKey, _ v: T?) throws(GGUFError) -> T {
        guard let v else { throw .missingKey(path: path, key: key.name(architecture: architecture)) }
        return v
    }

    /// An integer value if present; an error if present with another type.
    public func int(_ key: GGUFKey) throws(GGUFError) -> Int? { try typed(key, "an integer") { $0.int } }
    public func float(_ key: GGUFKey) throws(GGUFError) -> Double? { try typed(key, "a number") { $0.float } }
    public func string(_ key: GGUFKey) throws(GGUFError) -> String? { try typed(key, "a string") { $0.string } }
    public func bool(_ key: GGUFKey) throws(GGUFError) -> Bool? { try typed(key, "a bool") { $0.bool } }
    public func array(_ key: GGUFKey) throws(GGUFError) -> GGUFArray? { try typed(key, "an array") { $0.array } }

    public func requireInt(_ key: GGUFKey) throws(GGUFError) -> Int { try required(key, try int(key)) }
    public func requireFloat(_ key: GGUFKey) throws(GGUFError) -> Double { try required(key, try float(key)) }
    public func requireString(_ key: GGUFKey) throws(GGUFError) -> String { try required(key, try string(key)) }

    public func requireStrings(_ key: GGUFKey) throws(GGUFError) -> [String] {
        let a = try required(key, try array(key))
        guard case let .string(s) = a else {
            throw .wrongValueType(path: path, key: key.name(architecture: architecture), expected: "an array of strings", found: "array of \(a.elementType)")
        }
        return s
    }
}
