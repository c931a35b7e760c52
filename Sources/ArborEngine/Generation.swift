import ArborModels
import ArborTokenizers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why generation stopped.
public enum FinishReason: String, Codable, Sendable {
    /// The model produced an end-of-generation token (not included in the output).
    case endOfText = "eos"
    /// `maxTokens` were generated.
    case length
    /// A stop string appeared; the output is cut before it.
    case stop
}

/// Timing and counts of one generation.
public struct GenerationStats: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var generatedTokens: Int
    public var prefillMilliseconds: Double
    public var decodeMilliseconds: Double
    /// Speculative telemetry, when the generation ran through the speculative loop.
    public var speculative: SpeculativeStats?

    /// Generated tokens per second of decoding (the first token comes from prefill).
    public var tokensPerSecond: Double {
        decodeMilliseconds > 0 ? Double(max(generatedTokens - 1, 0)) / (decodeMilliseconds / 1000) : 0
    }
    public var prefillTokensPerSecond: Double {
        prefillMilliseconds > 0 ? Double(promptTokens) / (prefillMilliseconds / 1000) : 0
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", generatedTokens = "generated_tokens"
        case prefillMilliseconds = "prefill_ms", decodeMilliseconds = "decode_ms"
        case tokensPerSecond = "tokens_per_second", prefillTokensPerSecond = "prefill_tokens_per_second"
        case speculative
    }

    public init(promptTokens: Int = 0, generatedTokens: Int = 0, prefillMilliseconds: Double = 0, decodeMilliseconds: Double = 0) {
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.prefillMilliseconds = prefillMilliseconds
        self.decodeMilliseconds = decodeMilliseconds
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try c.decode(Int.self, forKey: .promptTokens)
        generatedTokens = try c.decode(Int.self, forKey: .generatedTokens)
        prefillMilliseconds = try c.decode(Double.self, forKey: .prefillMilliseconds)
        decodeMilliseconds = try c.decode(Double.self, forKey: .decodeMilliseconds)
        speculative = try c.decodeIfPresent(SpeculativeStats.self, forKey: .speculative)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(generatedTokens, forKey: .generatedTokens)
        try c.encode(prefillMilliseconds, forKey: .prefillMilliseconds)
        try c.encode(decodeMilliseconds, forKey: .decodeMilliseconds)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(prefillTokensPerSecond, forKey: .prefillTokensPerSecond)
        try c.encodeIfPresent(speculative, forKey: .speculative)
    }
}

/// The outcome of one generation.
public struct GenerationResult: Codable, Sendable {
    public var text: String
    public var promptTokens: [Int32]
    public var tokens: [Int32]
    public var finishReason: FinishReason
    public var stats: GenerationStats

    enum CodingKeys: String, CodingKey {
        case text, promptTokens = "prompt_tokens", tokens, finishReason = "finish_reason", stats
    }
}

/// What to generate and when to stop.
public struct GenerationParameters: Sendable {
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Stop when the output contains one of these strings (the output is cut before it).
    public var stopStrings: [String]
    /// Stop at the tokenizer's end-of-generation tokens. When false they are never sampled
    /// (their logits are masked, as llama.cpp's `ignore_eos` does), so generation runs to
    /// `maxTokens` or a stop string.
    public var stopAtEndOfText: Bool
    /// Tokens per forward call while reading the prompt.
    public var prefillChunk: Int

    public init(maxTokens: Int = 128, sampling: SamplingParameters = .greedy, stopStrings: [String] = [],
                stopAtEndOfText: Bool = true, prefillChunk: Int = 256) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopAtEndOfText = stopAtEndOfText
        self.prefillChunk = prefillChunk
    }
}

/// Plain autoregressive generation with one model: prefill the prompt, then sample one token
/// per forward pass. The reference the speculative paths must reproduce.
public final class TextGenerator {
    public let model: any LanguageModel
    public let tokenizer: any Tokenizer

    public init(model: any LanguageModel, tokenizer: any Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Generate from prompt token ids. `onText` receives each complete piece of text as soon
    /// as it is known (never broken UTF-8); return `false` from it to stop early.
    ///
    /// A provided `cache` may already hold the first `cache.count` prompt tokens (a reused
    /// prefix, or a rolled-back earlier generation); only the rest is prefilled.
    public func generate(
        promptTokens: [Int32], parameters: GenerationParameters,
        cache providedCache: (any KVCache)? = nil,
        onText: (String) -> Bool = { _ in true }
    ) throws -> GenerationResult {
        try generate(promptTokens: promptTokens, parameters: parameters, cache: providedCache, onPiece: { onText($0.text) })
    }

    /// As `generate(promptTokens:parameters:cache:onText:)`, with each piece as a `TextPiece`
    /// (plain decoding drafts nothing: every piece is the model's own).
    public func generate(
        promptTokens: [Int32], parameters: GenerationParameters,
        cache providedCache: (any KVCache)? = nil,
        onPiece onText: (TextPiece) -> Bool
    ) throws -> GenerationResult {
        guard !promptTokens.isEmpty else { throw GenerationError.emptyPrompt }
        try parameters.sampling.validate()
        let limit = model.configuration.contextLength
        guard promptTokens.count + parameters.maxTokens <= limit else {
            throw GenerationError.tooLong(promptTokens: promptTokens.count, maxTokens: parameters.maxTokens, contextLength: limit)
        }
        let cache = providedCache ?? model.makeCache(capacity: promptTokens.count + parameters.maxTokens)
        guard cache.count < promptTokens.count else {
            throw GenerationError.cacheNotAPrefix(cached: cache.count, promptTokens: promptTokens.count)
        }
        var sampler = try StandardSampler(parameters: parameters.sampling)
        var stats = GenerationStats(promptTokens: promptTokens.count)
        var history = promptTokens
        var output = OutputStream(tokenizer: tokenizer, parameters: parameters)

        // Prefill in chunks; only the last chunk's last logits are needed.
        var start = MonotonicClock.now
        guard var logits = try model.prefill(promptTokens[cache.count...], cache: cache, chunk: parameters.prefillChunk) else {
            throw GenerationError.cacheNotAPrefix(cached: cache.count, promptTokens: promptTokens.count)
        }
        stats.prefillMilliseconds = MonotonicClock.millisecondsSince(start)
        start = MonotonicClock.now

        while !output.isFinished {
            let v = logits.vocabularySize, r = logits.rowCount - 1
            if !parameters.stopAtEndOfText {
                for t in tokenizer.endOfGenerationTokens where Int(t) < v { logits.values[r * v + Int(t)] = -.infinity }
            }
            let token = logits.values.withUnsafeMutableBufferPointer { all in
                sampler.sample(logits: UnsafeMutableBufferPointer(rebasing: all[(r * v)..<((r + 1) * v)]), history: history)
            }
            history.append(token)
            guard output.append(token, onText: onText) else { break }
            logits = try model.forward(.sequential([token], startingAt: cache.count), cache: cache)
        }
        output.close(onText: onText)
        stats.decodeMilliseconds = MonotonicClock.millisecondsSince(start)
        stats.generatedTokens = output.tokens.count
        return GenerationResult(text: output.text, promptTokens: promptTokens, tokens: output.tokens, finishReason: output.finish ?? .length, stats: stats)
    }

    static func firstStop(in text: String, stops: [String]) -> String.Index? {
        stops.compactMap { s in s.isEmpty ? nil : text.firstRange(of: s)?.lowerBound }.min()
    }
}

/// Errors from generation requests.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt
    case tooLong(promptTokens: Int, maxTokens: Int, contextLength: Int)
    case cacheNotAPrefix(cached: Int, promptTokens: Int)

    public var description: String {
        switch self {
        case .emptyPrompt: "the prompt is empty: give at least one token"
        case let .tooLong(p, m, c): "prompt (\(p) tokens) + max tokens (\(m)) exceed the context length \(c)"
        case let .cacheNotAPrefix(cached, p): "the cache holds \(cached) entries, not a strict prefix of the \(p)-token prompt"
        }
    }
}
