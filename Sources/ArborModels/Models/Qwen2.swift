import ArborGGUF

/// Qwen2 (`general.architecture = qwen2`): llama's block with q/k/v biases and NeoX RoPE
/// (pairs `(i, i + d/2)`). Qwen2.5-Coder uses it.
enum Qwen2: ArchitectureLoader {
    static let architecture = "qwen2"

    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel {
        let config = try ModelConfiguration(file: file)
        try config.validate(path: file.path)
        return try DecoderWeightLoader(file: file, config: config).model(
            traits: DecoderTraits(neoxRope: true, activation: .swiglu, embeddingScale: nil, queryScale: nil),
            biases: true, qkNorm: false, postNorms: false, threads: threads)
    }
}
