import ArborGGUF
import Foundation

/// Tiny, randomly initialised models of each supported architecture, written as real GGUF files
/// for hermetic tests: the same loader, tokenizer and forward pass as the real models, in
/// milliseconds.
public struct TinyModel: Sendable {
    public enum Architecture: String, Sendable, CaseIterable {
        case llama, qwen2, gemma3
    }

    public var architecture: Architecture
    public var layers = 2
    public var embedding = 64
    public var feedForward = 96
    public var heads = 4
    public var kvHeads = 2
    public var headSize = 16
    public var contextLength = 256
    /// Sliding window of Gemma 3's local layers (small so tests cross it).
    public var slidingWindow = 6
    /// Weight type of the matrices (F32 or Q8_0 keep tiny shapes legal).
    public var weightType: GGMLType = .f32
    public var seed: UInt64 = 1
    /// Scales the random weights; larger values make sharper distributions.
    public var weightScale: Float = 0.5
    /// `.alternate`: another vocabulary for the same text (byte tokens in reverse order, other
    /// merges), for drafting across vocabularies.
    public var vocabularyKind: VocabularyKind = .standard

    public enum VocabularyKind: Sendable {
        case standard, alternate
    }

    public init(_ architecture: Architecture) {
        self.architecture = architecture
        if architecture == .gemma3 {
            kvHeads = 1
            layers = 3
        }
    }

    /// 256 byte tokens (GPT-2 byte-level alphabet), then a few merges and special tokens.
    public static let byteAlphabet: [String] = {
        // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100...
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [String](repeating: "", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = String(Character(Unicode.Scalar(UInt32(c))!)) }
        return table
    }()

    public static let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    public static let alternateMerges = ["i n", "Ġ a", "e r", "o n", "Ġ t", "Ġt o", "h e", "Ġ in"]

    /// The merges of this model's vocabulary.
    public var merges: [String] { vocabularyKind == .standard ? Self.merges : Self.alternateMerges }
    public static let specialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    public var vocabulary: [String] {
        (vocabularyKind == .standard ? Self.byteAlphabet : Self.byteAlphabet.reversed())
            + merges.map { $0.replacingOccurrences(of: " ", with: "") } + Self.specialTokens
    }

    public var vocabularySize: Int { vocabulary.count }
    public var endOfText: Int32 { Int32(vocabulary.count - 3) }

    /// The GGUF file.
    public func writer() -> GGUFWriter {
        var rng = SplitMix64(seed: seed)
        var w = GGUFWriter(version: 3)
        let arch = architecture.rawValue
        w.set("general.architecture", .string(arch))
        w.set("general.name", .string("tiny-\(arch)"))
        w.set(.blockCount, .uint32(UInt32(layers)))
        w.set(.contextLength, .uint32(UInt32(contextLength)))
        w.set(.embeddingLength, .uint32(UInt32(embedding)))
        w.set(.feedForwardLength, .uint32(UInt32(feedForward)))
        w.set(.headCount, .uint32(UInt32(heads)))
        w.set(.headCountKV, .uint32(UInt32(kvHeads)))
        w.set(.layerNormRMSEpsilon, .float32(1e-6))
        // Gemma 3's local layers use base 10 000: a different global base makes the two distinguishable.
        w.set(.ropeFreqBase, .float32(architecture == .gemma3 ? 1_000_000 : 10_000))
        if architecture == .gemma3 {
            w.set(.keyLength, .uint32(UInt32(headSize)))
            w.set(.valueLength, .uint32(UInt32(headSize)))
            w.set(.slidingWindow, .uint32(UInt32(slidingWindow)))
            w.set(.slidingWindowPattern, .uint32(2))
        }
        // Tokenizer: byte-level BPE, the qwen2 pre-tokenizer, ChatML.
        let vocab = vocabulary
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string("qwen2"))
        w.set("tokenizer.ggml.tokens", .array(.string(vocab)))
        w.set("tokenizer.ggml.token_type", .array(.int32(vocab.indices.map { $0 >= vocab.count - 3 ? 3 : 1 })))
        w.set("tokenizer.ggml.merges", .array(.string(merges)))
        w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(endOfText)))
        w.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(vocab.count - 1)))
        w.set("tokenizer.ggml.add_bos_token", .bool(false))
        w.set("tokenizer.chat_template", .string("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"))

        let d = embedding, q = heads * headSize, kv = kvHeads * headSize, v = vocab.count
        func matrix(_ name: String, _ columns: Int, _ rows: Int, scale: Float? = nil) {
            let s = (scale ?? weightScale) / Float(columns).squareRoot()
            let values = (0..<(columns * rows)).map { _ in rng.nextFloat() * 2 * s - s }
            w.addTensor(name, dims: [columns, rows], type: weightType, floats: values)
        }
        func norm(_ name: String, _ n: Int) {
            w.addTensor(name, dims: [n], type: .f32, floats: (0..<n).map { _ in 0.8 + 0.4 * rng.nextFloat() })
        }
        func bias(_ name: String, _ n: Int) {
            w.addTensor(name, dims: [n], type: .f32, floats: (0..<n).map { _ in 0.2 * rng.nextFloat() - 0.1 })
        }
        matrix("token_embd.weight", d, v, scale: 8)
        norm("output_norm.weight", d)
        if architecture != .gemma3 { matrix("output.weight", d, v, scale: 4) }
        for l in 0..<layers {
            let p = "blk.\(l)."
            norm(p + "attn_norm.weight", d)
            matrix(p + "attn_q.weight", d, q)
            matrix(p + "attn_k.weight", d, kv)
            matrix(p + "attn_v.weight", d, kv)
            matrix(p + "attn_output.weight", q, d)
            if architecture == .qwen2 {
                bias(p + "attn_q.bias", q)
                bias(p + "attn_k.bias", kv)
                bias(p + "attn_v.bias", kv)
            }
            if architecture == .gemma3 {
                norm(p + "attn_q_norm.weight", headSize)
                norm(p + "attn_k_norm.weight", headSize)
                norm(p + "post_attention_norm.weight", d)
                norm(p + "post_ffw_norm.weight", d)
            }
            norm(p + "ffn_norm.weight", d)
            matrix(p + "ffn_gate.weight", d, feedForward)
            matrix(p + "ffn_up.weight", d, feedForward)
            matrix(p + "ffn_down.weight", feedForward, d)
        }
        return w
    }

    /// Write the model into `directory` and return its path.
    public func write(to directory: TemporaryDirectory) throws -> String {
        try writer().write(to: directory.url, name: "tiny-\(architecture.rawValue)-\(seed)\(vocabularyKind == .alternate ? "-alt" : "").gguf").path
    }
}

/// A small deterministic generator for test data.
public struct SplitMix64: Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
