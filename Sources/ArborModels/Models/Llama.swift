import ArborGGUF

/// Llama (`general.architecture = llama`): RMSNorm, SwiGLU, RoPE on adjacent pairs, optional
/// tied output. SmolLM2 uses it.
enum Llama: ArchitectureLoader {
    static let architecture = "llama"

    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel {
        let config = try ModelConfiguration(file: file)
        try config.validate(path: file.path)
        let w = DecoderWeightLoader(file: file, config: config)
        return DecoderModel(
            file: file, configuration: config,
            traits: DecoderTraits(neoxRope: false, activation: .swiglu, embeddingScale: nil, queryScale: nil),
            tokenEmbedding: try w.matrix("token_embd.weight", columns: config.embeddingLength, rows: config.vocabularySize),
            output: try w.outputMatrix(),
            outputNorm: try w.vector("output_norm.weight", count: config.embeddingLength),
            layers: try w.layers(withBiases: true, withQKNorm: false, withPostNorms: false),
            threads: threads)
    }
}
