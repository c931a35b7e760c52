import ArborTokenizers
import ArborEngine
/// One speculative setting measured by `arbor bench spec`.
public struct SpeculativeSetting: Sendable {
    /// Label in tables (`plain`, `ngram`, `suffix chain`, `model tree`...).
    public var name: String
    /// Builds a fresh drafter for a prompt set (`nil`: plain decoding). Called once per setting
    /// and sampling mode, so drafters that learn across requests learn across the set.
    public var makeDrafter: @Sendable () throws -> (any Drafter)?
    public var configuration: SpeculationConfiguration

    public init(name: String, configuration: SpeculationConfiguration, makeDrafter: @escaping @Sendable () throws -> (any Drafter)?) {
        self.name = name
        self.configuration = configuration
        self.makeDrafter = makeDrafter
    }
}

/// Results of one setting on one prompt set.
public struct SpeculativeBenchmarkRow: Codable, Sendable {
    public var promptSet: String
    public var setting: String
    public var sampled: Bool
    public var prompts: Int
    public var generatedTokens: Int
    /// Time of all rounds (prefill excluded), summed over prompts.
    public var decodeMilliseconds: Double
    public var tokensPerSecond: Double
    /// Tokens/s ÷ plain decoding's on the same prompts and sampling mode.
    public var speedup: Double
    public var acceptanceRate: Double
    public var meanAcceptedLength: Double
    public var meanVerifyBatchSize: Double
    /// Greedy only: prompts whose output equals plain decoding's token for token.
    public var identicalToPlain: Int?
    public var speculative: SpeculativeStats

    enum CodingKeys: String, CodingKey {
        case promptSet = "prompt_set", setting, sampled, prompts, generatedTokens = "generated_tokens"
        case decodeMilliseconds = "decode_ms", tokensPerSecond = "tokens_per_second", speedup
        case acceptanceRate = "acceptance_rate", meanAcceptedLength = "mean_accepted_length"
        case meanVerifyBatchSize = "mean_verify_batch_size", identicalToPlain = "identical_to_plain", speculative
    }
}

extension SpeculativeBenchmarkRow {
    /// The rows as a machine-readable table (`.csv`): plain numbers, no units.
    public static func table(_ rows: [SpeculativeBenchmarkRow]) -> ResultTable {
        ResultTable(
            columns: ["set", "setting", "mode", "prompts", "tokens", "decode_ms", "tokens_per_second", "speedup", "acceptance_rate",
                      "mean_accepted_length", "mean_verify_batch", "draft_ms_per_step", "identical_to_plain"],
            rows: rows.map { r in
                [r.promptSet, r.setting, r.sampled ? "sampled" : "greedy", "\(r.prompts)", "\(r.generatedTokens)",
                 String(format: "%.1f", r.decodeMilliseconds), String(format: "%.2f", r.tokensPerSecond),
                 String(format: "%.3f", r.speedup), String(format: "%.4f", r.acceptanceRate),
                 String(format: "%.3f", r.meanAcceptedLength), String(format: "%.2f", r.meanVerifyBatchSize),
                 String(format: "%.3f", r.speculative.draftMillisecondsPerStep), r.identicalToPlain.map(String.init) ?? ""]
            })
    }
}

/// Runs settings over prompts on one target, plain decoding first, and compares.
///
/// Every setting decodes through `SpeculativeGenerator` (plain = no drafter), so the timing
/// covers the same loop; each prompt's first target pass (the last prompt token plus the first
/// tree) counts as decoding, prefill of the rest does not.
public struct SpeculativeBenchmark {
    public var verifier: any Verifier
    public var tokenizer: any Tokenizer
    public var maxTokens: Int
    /// Called after each prompt with (setting, prompt index, result).
    public var progress: (String, Int, GenerationResult) -> Void = { _, _, _ in }

    public init(verifier: any Verifier, tokenizer: any Tokenizer, maxTokens: Int) {
        self.verifier = verifier
        self.tokenizer = tokenizer
        self.maxTokens = maxTokens
    }

    public func run(promptSet: String, prompts: [[Int32]], settings: [SpeculativeSetting], sampling: SamplingParameters) throws -> [SpeculativeBenchmarkRow] {
        var rows: [SpeculativeBenchmarkRow] = []
        var plainOutputs: [[Int32]]? = nil
        var plainRate: Double? = nil
        for setting in settings {
            let drafter = try setting.makeDrafter()
            let generator = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: tokenizer, configuration: setting.configuration)
            var stats = SpeculativeStats(drafter: drafter?.name ?? "none")
            var outputs: [[Int32]] = []
            var tokens = 0
            var ms = 0.0
            for (i, prompt) in prompts.enumerated() {
                var s = sampling
                s.seed = sampling.seed &+ UInt64(i)
                let r = try generator.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: maxTokens, sampling: s))
                outputs.append(r.tokens)
                tokens += r.tokens.count
                ms += r.stats.decodeMilliseconds
                if let sp = r.stats.speculative { stats.merge(sp) }
                progress(setting.name, i, r)
            }
            let rate = ms > 0 ? Double(tokens) / (ms / 1000) : 0
            if drafter == nil && plainOutputs == nil {
                plainOutputs = outputs
                plainRate = rate
            }
            var identical: Int? = nil
            if sampling.isGreedy, let plain = plainOutputs {
                identical = zip(plain, outputs).filter { $0 == $1 }.count
            }
            rows.append(SpeculativeBenchmarkRow(
                promptSet: promptSet, setting: setting.name, sampled: !sampling.isGreedy, prompts: prompts.count,
                generatedTokens: tokens, decodeMilliseconds: ms, tokensPerSecond: rate,
                speedup: plainRate.map { $0 > 0 ? rate / $0 : 0 } ?? 0,
                acceptanceRate: stats.acceptanceRate, meanAcceptedLength: stats.meanAcceptedLength,
                meanVerifyBatchSize: stats.meanVerifyBatchSize, identicalToPlain: identical, speculative: stats))
        }
        return rows
    }
}



extension SamplingParameters {
    /// The sampled mode every benchmark and evaluation uses: temperature 0.7, top-p 0.9, no
    /// repetition penalty, the given seed (one per prompt).
    public static func benchmarkSampled(seed: UInt64) -> SamplingParameters {
        var s = SamplingParameters(temperature: 0.7, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1, seed: seed)
        s.repetitionLastN = 0
        return s
    }
}
