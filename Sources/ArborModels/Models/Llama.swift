import ArborGGUF

/// Llama (`general.architecture = llama`): RMSNorm, SwiGLU, RoPE on adjacent pairs `(2i, 2i+1)`,
/// optional q/k/v biases, tied or separate output. SmolLM2 uses it.
enum Llama: ArchitectureLoader {
    static let architecture = "llama"

    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel {
        let config = try ModelConfiguration(file: file)
        try config.validate(path: file.path)
        return try DecoderWeightLoader(file: file, config: config).model(
            traits: DecoderTraits(neoxRope: false, activation: .swiglu, embeddingScale: nil, queryScale: nil),
            biases: true, qkNorm: false, postNorms: false, threads: threads)
    }
}
