import ArborGGUF

/// Qwen2 (`general.architecture = qwen2`): llama's block with q/k/v biases and NeoX RoPE
/// (pairs `(i, i + d/2)`). Qwen2.5-Coder uses it.
enum Qwen2: ArchitectureLoader {
    static let architecture = "qwen2"

    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel {
        let config = try ModelConfiguration(file: file)
        try config.validate(path: file.path)
        let w = DecoderWeightLoader(file: file, config: config)
        return DecoderModel(
            file: file, configuration: config,
            traits: DecoderTraits(neoxRope: true, activation: .swiglu, embeddingScale: nil, queryScale: nil),
            tokenEmbedding: try w.matrix("token_embd.weight", columns: config.embeddingLength, rows: config.vocabularySize),
            output: try w.outputMatrix(),
            outputNorm: try w.vector("output_norm.weight", count: config.embeddingLength),
            layers: try w.layers(withBiases: true, withQKNorm: false, withPostNorms: false),
            threads: threads)
    }
}
