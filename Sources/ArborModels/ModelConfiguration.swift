import ArborGGUF
import CArborKernels

/// Hyperparameters of a decoder-only transformer, read from GGUF metadata and validated.
public struct ModelConfiguration: Codable, Sendable, Equatable {
    public var architecture: String
    public var name: String
    public var vocabularySize: Int
    public var embeddingLength: Int
    public var blockCount: Int
    public var feedForwardLength: Int
    public var headCount: Int
    public var headCountKV: Int
    /// Per-head size of queries and keys.
    public var keyLength: Int
    /// Per-head size of values.
    public var valueLength: Int
    public var rmsEpsilon: Float
    public var ropeFreqBase: Float
    /// RoPE base of sliding-window layers (Gemma 3 uses 10 000 there).
    public var ropeFreqBaseSWA: Float
    public var ropeDimensionCount: Int
    public var contextLength: Int
    /// Keys further back than this are invisible in sliding-window layers; 0 = no window.
    public var slidingWindow: Int
    /// Every `slidingWindowPattern`-th layer (the last of each group) is global; 0 = none slide.
    public var slidingWindowPattern: Int

    public var queryDimension: Int { headCount * keyLength }
    public var keyValueDimension: Int { headCountKV * keyLength }
    public var valueDimension: Int { headCountKV * valueLength }

    /// Whether layer `layer` uses the sliding window.
    public func isSlidingWindowLayer(_ layer: Int) -> Bool {
        slidingWindow > 0 && slidingWindowPattern > 0 && layer % slidingWindowPattern < slidingWindowPattern - 1
    }

    /// Read the common keys of `file`; architecture files adjust the rest.
    public init(file: GGUFFile) throws(ModelError) {
        do {
            architecture = file.architecture
            name = try file.string(.name) ?? architecture
            embeddingLength = try file.requireInt(.embeddingLength)
            blockCount = try file.requireInt(.blockCount)
            feedForwardLength = try file.requireInt(.feedForwardLength)
            headCount = try file.requireInt(.headCount)
            headCountKV = try file.int(.headCountKV) ?? headCount
            keyLength = try file.int(.keyLength) ?? (headCount > 0 ? embeddingLength / headCount : 0)
            valueLength = try file.int(.valueLength) ?? keyLength
            rmsEpsilon = Float(try file.requireFloat(.layerNormRMSEpsilon))
            ropeFreqBase = Float(try file.float(.ropeFreqBase) ?? 10_000)
            ropeFreqBaseSWA = ropeFreqBase
            ropeDimensionCount = try file.int(.ropeDimensionCount) ?? keyLength
            contextLength = try file.int(.contextLength) ?? 2048
            slidingWindow = try file.int(.slidingWindow) ?? 0
            slidingWindowPattern = try file.int(.slidingWindowPattern) ?? 0
            let embedding = try file.tensorInfo("token_embd.weight")
            vocabularySize = try file.int(.vocabSize) ?? embedding.rowCount
        } catch {
            throw .file(error)
        }
    }

    /// Check the invariants the forward pass relies on.
    public func validate(path: String) throws(ModelError) {
        func check(_ ok: Bool, _ reason: String) throws(ModelError) {
            if !ok { throw .badConfiguration(path: path, reason: reason) }
        }
        try check(vocabularySize > 0, "vocabulary size \(vocabularySize)")
        try check(embeddingLength > 0 && blockCount > 0 && feedForwardLength > 0, "non-positive dimensions")
        try check(headCount > 0 && headCountKV > 0 && headCount % headCountKV == 0,
                  "head counts \(headCount)/\(headCountKV) must be positive with query heads a multiple of key/value heads")
        try check(keyLength > 0 && keyLength % 2 == 0 && valueLength > 0, "head sizes \(keyLength)/\(valueLength)")
        let largest = Int(ARBOR_ATTEND_MAX_DIM)
        try check(keyLength <= largest && valueLength <= largest,
                  "head sizes \(keyLength)/\(valueLength): the attention kernel takes heads of at most \(largest)")
        try check(ropeDimensionCount > 0 && ropeDimensionCount <= keyLength && ropeDimensionCount % 2 == 0,
                  "rope dimension count \(ropeDimensionCount)")
        try check(rmsEpsilon > 0 && rmsEpsilon < 1, "rms epsilon \(rmsEpsilon)")
        try check(contextLength > 0, "context length \(contextLength)")
    }
}
