import ArborEngine

extension SamplingParameters {
    /// The wire form of these parameters.
    public var wire: WireSampling {
        WireSampling(temperature: temperature, topK: UInt32(clamping: topK), topP: topP, minP: minP,
                     repetitionPenalty: repetitionPenalty, repetitionLastN: UInt32(clamping: repetitionLastN), seed: seed)
    }

    /// Parameters from their wire form (validate before use).
    public init(wire w: WireSampling) {
        self.init(temperature: w.temperature, topK: Int(w.topK), topP: w.topP, minP: w.minP,
                  repetitionPenalty: w.repetitionPenalty, repetitionLastN: Int(w.repetitionLastN), seed: w.seed)
    }
}
