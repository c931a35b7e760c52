import ArborGGUF

/// Gemma 3 (`general.architecture = gemma3`): embeddings scaled by √d, per-head RMSNorm of
/// queries and keys, norms after attention and after the FFN, GeGLU, queries scaled by
/// 1/√headSize, and sliding-window attention in five of every six layers, which also use a
/// RoPE base of 10 000. The output is tied to the embeddings.
enum Gemma3: ArchitectureLoader {
    static let architecture = "gemma3"

    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel {
        var config = try ModelConfiguration(file: file)
        // llama.cpp's values for Gemma 3 where the file is silent: local layers use base 10 000
        // and every sixth layer is global.
        config.ropeFreqBaseSWA = 10_000
        if config.slidingWindowPattern == 0 { config.slidingWindowPattern = 6 }
        try config.validate(path: file.path)
        return try DecoderWeightLoader(file: file, config: config).model(
            traits: DecoderTraits(
                neoxRope: true, activation: .geglu,
                embeddingScale: Float(config.embeddingLength).squareRoot(),
                queryScale: 1 / Float(config.keyLength).squareRoot()),
            biases: false, qkNorm: true, postNorms: true, threads: threads)
    }
}
