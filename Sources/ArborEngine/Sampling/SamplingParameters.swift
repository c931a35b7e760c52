/// The knobs of the standard sampling pipeline.
///
/// The pipeline follows llama.cpp's default chain order: repetition penalty, top-k, top-p,
/// min-p, temperature, then a draw from the resulting distribution. Every filter has an
/// "off" value, listed next to it. A `temperature` of exactly 0 selects greedy decoding
/// (argmax after the repetition penalty; ties go to the lowest token id).
///
/// The memberwise defaults are llama.cpp's defaults (`--temp 0.8 --top-k 40 --top-p 0.95
/// --min-p 0.05 --repeat-penalty 1.0 --repeat-last-n 64`). When decoding from JSON, missing
/// keys take these defaults too, so partial configurations are accepted.
public struct SamplingParameters: Codable, Sendable, Equatable, Hashable {
    /// Softmax temperature applied after the filters. `0` means greedy decoding; must be
    /// finite and non-negative.
    public var temperature: Float
    /// Keep only the `topK` highest logits. `0` (or any value ≥ vocabulary size) disables it.
    public var topK: Int
    /// Nucleus sampling: keep the smallest set of most likely tokens whose cumulative
    /// probability (computed before temperature) is at least `topP`. `1` disables it; must
    /// lie in (0, 1].
    public var topP: Float
    /// Drop tokens whose probability (computed before temperature) is below `minP` times the
    /// probability of the most likely token. `0` disables it; must lie in [0, 1].
    public var minP: Float
    /// Repetition penalty for tokens present in the last `repetitionLastN` history tokens:
    /// a positive logit is divided by it, a non-positive one multiplied. Each distinct token
    /// is penalised once, however often it occurs. `1` disables it; must be finite and > 0.
    public var repetitionPenalty: Float
    /// How many of the most recent history tokens the repetition penalty looks at. `0`
    /// disables the penalty; must be non-negative.
    public var repetitionLastN: Int
    /// Seed of the sampler's random number generator (see ``Xoshiro256StarStar``).
    public var seed: UInt64

    /// Creates sampling parameters. Defaults match llama.cpp's command-line defaults.
    public init(
        temperature: Float = 0.8,
        topK: Int = 40,
        topP: Float = 0.95,
        minP: Float = 0.05,
        repetitionPenalty: Float = 1.0,
        repetitionLastN: Int = 64,
        seed: UInt64 = 0
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.repetitionLastN = repetitionLastN
        self.seed = seed
    }

    /// Greedy decoding: temperature 0 and every filter and penalty off.
    public static let greedy = SamplingParameters(
        temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, repetitionLastN: 64, seed: 0
    )

    /// Whether these parameters select greedy (argmax) decoding.
    public var isGreedy: Bool { temperature == 0 }

    /// Whether the repetition penalty has any effect.
    public var hasRepetitionPenalty: Bool { repetitionPenalty != 1 && repetitionLastN > 0 }

    /// Checks every field against its documented range.
    ///
    /// - Throws: the first ``SamplingParametersError`` found, in field declaration order.
    public func validate() throws(SamplingParametersError) {
        guard temperature.isFinite, temperature >= 0 else { throw .invalidTemperature(temperature) }
        guard topK >= 0 else { throw .invalidTopK(topK) }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw .invalidTopP(topP) }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw .invalidMinP(minP) }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw .invalidRepetitionPenalty(repetitionPenalty)
        }
        guard repetitionLastN >= 0 else { throw .invalidRepetitionLastN(repetitionLastN) }
    }

    private enum CodingKeys: String, CodingKey {
        case temperature, topK, topP, minP, repetitionPenalty, repetitionLastN, seed
    }

    /// Decodes parameters; absent keys take the memberwise-initializer defaults.
    /// Decoding does not validate: call ``validate()``.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SamplingParameters()
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? d.temperature
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? d.topP
        minP = try c.decodeIfPresent(Float.self, forKey: .minP) ?? d.minP
        repetitionPenalty = try c.decodeIfPresent(Float.self, forKey: .repetitionPenalty) ?? d.repetitionPenalty
        repetitionLastN = try c.decodeIfPresent(Int.self, forKey: .repetitionLastN) ?? d.repetitionLastN
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    }

    /// Encodes every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(topK, forKey: .topK)
        try c.encode(topP, forKey: .topP)
        try c.encode(minP, forKey: .minP)
        try c.encode(repetitionPenalty, forKey: .repetitionPenalty)
        try c.encode(repetitionLastN, forKey: .repetitionLastN)
        try c.encode(seed, forKey: .seed)
    }
}

/// Why a ``SamplingParameters`` value is invalid. Each case carries the offending value.
public enum SamplingParametersError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Temperature is negative, infinite or NaN.
    case invalidTemperature(Float)
    /// Top-k is negative.
    case invalidTopK(Int)
    /// Top-p is outside (0, 1] or NaN.
    case invalidTopP(Float)
    /// Min-p is outside [0, 1] or NaN.
    case invalidMinP(Float)
    /// Repetition penalty is not a finite positive number.
    case invalidRepetitionPenalty(Float)
    /// Repetition window is negative.
    case invalidRepetitionLastN(Int)

    /// A human-readable explanation naming the valid range.
    public var description: String {
        switch self {
        case .invalidTemperature(let v): "temperature must be finite and >= 0 (got \(v))"
        case .invalidTopK(let v): "top-k must be >= 0 (got \(v); 0 disables it)"
        case .invalidTopP(let v): "top-p must be in (0, 1] (got \(v); 1 disables it)"
        case .invalidMinP(let v): "min-p must be in [0, 1] (got \(v); 0 disables it)"
        case .invalidRepetitionPenalty(let v): "repetition penalty must be finite and > 0 (got \(v); 1 disables it)"
        case .invalidRepetitionLastN(let v): "repetition window must be >= 0 (got \(v); 0 disables it)"
        }
    }
}
