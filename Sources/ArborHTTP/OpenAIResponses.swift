import ArborEngine
import ArborRuntime

/// Token counts, as the OpenAI API reports them.
struct Usage: Encodable, Sendable, Equatable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int

    init(_ r: GenerationResult) {
        promptTokens = r.promptTokens.count
        completionTokens = r.tokens.count
        totalTokens = promptTokens + completionTokens
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
}

/// llama.cpp's server `timings`: prompt reading and prediction, and its speculative counters.
struct Timings: Encodable, Sendable {
    var promptN: Int
    var promptMs: Double
    var promptPerSecond: Double
    var predictedN: Int
    var predictedMs: Double
    var predictedPerSecond: Double
    var draftN: Int
    var draftNAccepted: Int

    init(_ r: GenerationResult) {
        let s = r.stats
        promptN = s.promptTokens
        promptMs = s.prefillMilliseconds
        promptPerSecond = s.prefillTokensPerSecond
        predictedN = s.generatedTokens
        predictedMs = s.decodeMilliseconds
        predictedPerSecond = s.decodeMilliseconds > 0 ? Double(s.generatedTokens) / (s.decodeMilliseconds / 1000) : 0
        draftN = s.speculative?.draftedNodes ?? 0
        draftNAccepted = s.speculative?.acceptedNodes ?? 0
    }

    enum CodingKeys: String, CodingKey {
        case promptN = "prompt_n", promptMs = "prompt_ms", promptPerSecond = "prompt_per_second"
        case predictedN = "predicted_n", predictedMs = "predicted_ms", predictedPerSecond = "predicted_per_second"
        case draftN = "draft_n", draftNAccepted = "draft_n_accepted"
    }
}

/// Arbor's own account of a response: how speculation went and what it cost.
struct ArborReport: Encodable, Sendable {
    var drafter: String
    var rounds: Int
    var plainRounds: Int
    var runAheadRounds: Int
    /// Rounds that sent a draft (vLLM's num_drafts).
    var drafts: Int
    var drafted: Int
    var accepted: Int
    var acceptanceRate: Double
    var meanAcceptedLength: Double
    var acceptanceByDepth: [Double]
    var acceptedByDepth: [Int]
    var bytesUp: Int
    var bytesDown: Int
    var serverMs: Double
    var objective: String
    var cs: Double
    var costPerMillionTokens: Double
    var costUnit: String
    var dollarsPerMillionTokens: Double
    var joulesPerToken: Double
    var energy: String
    var predictedTokensPerSecond: Double
    var tokensPerSecond: Double
    var serviceLevelNote: String?

    init(_ r: GenerationResult, target: String) {
        let sp = r.stats.speculative
        drafter = sp?.drafter ?? "none"
        rounds = sp?.rounds ?? r.tokens.count
        plainRounds = sp?.plainRounds ?? r.tokens.count
        runAheadRounds = sp?.runAheadRounds ?? 0
        drafts = sp.map { $0.rounds - $0.plainRounds } ?? 0
        drafted = sp?.draftedNodes ?? 0
        accepted = sp?.acceptedNodes ?? 0
        acceptanceRate = sp?.acceptanceRate ?? 0
        meanAcceptedLength = sp?.meanAcceptedLength ?? 1
        acceptanceByDepth = sp?.acceptanceByDepth ?? []
        acceptedByDepth = sp?.acceptedByDepth ?? []
        bytesUp = sp?.remote?.bytesSent ?? 0
        bytesDown = sp?.remote?.bytesReceived ?? 0
        let c = sp?.cost
        serverMs = sp?.remote?.serverBusyMilliseconds ?? c?.measured.targetMilliseconds ?? r.stats.decodeMilliseconds
        objective = c?.objective.rawValue ?? Objective.tps.rawValue
        cs = c?.cs.value ?? 0
        costPerMillionTokens = c?.costPerMillionTokens ?? 0
        costUnit = c?.objective.unit ?? "-"
        dollarsPerMillionTokens = c?.totalDollarsPerMillionTokens ?? 0
        joulesPerToken = c?.joulesPerToken ?? 0
        energy = c.map { "draft \($0.draftEnergySource.rawValue), target \($0.targetEnergySource?.rawValue ?? "modelled")" } ?? "not measured (plain decoding)"
        predictedTokensPerSecond = c?.predictedTokensPerSecond ?? 0
        tokensPerSecond = c?.tokensPerSecond ?? r.stats.tokensPerSecond
        serviceLevelNote = c?.serviceLevelNote
    }

    enum CodingKeys: String, CodingKey {
        case drafter, rounds, plainRounds = "plain_rounds", runAheadRounds = "run_ahead_rounds", drafts, drafted, accepted
        case acceptanceRate = "acceptance_rate", meanAcceptedLength = "mean_accepted_length", acceptanceByDepth = "acceptance_by_depth"
        case acceptedByDepth = "accepted_by_depth", bytesUp = "bytes_up", bytesDown = "bytes_down", serverMs = "server_ms", objective, cs
        case costPerMillionTokens = "cost_per_million_tokens", costUnit = "cost_unit", dollarsPerMillionTokens = "dollars_per_million_tokens"
        case joulesPerToken = "joules_per_token", energy, predictedTokensPerSecond = "predicted_tokens_per_second"
        case tokensPerSecond = "tokens_per_second", serviceLevelNote = "service_level_note"
    }
}

/// The OpenAI finish reason of a result: `stop` (end of text or a stop string) or `length`.
func finishReason(_ r: GenerationResult) -> String {
    r.finishReason == .length ? "length" : "stop"
}

/// `chat.completion` / `text_completion` bodies and their streamed chunks, built as JSON values
/// so that one place shapes both kinds.
enum Shapes {
    static func completion(chat: Bool, id: String, created: Int, model: String, result r: GenerationResult, target: String) -> JSON {
        let choice: JSON = chat
            ? ["index": 0, "message": ["role": "assistant", "content": .string(r.text)], "logprobs": nil, "finish_reason": .string(finishReason(r))]
            : ["index": 0, "text": .string(r.text), "logprobs": nil, "finish_reason": .string(finishReason(r))]
        return [
            "id": .string(id), "object": .string(chat ? "chat.completion" : "text_completion"), "created": .int(created),
            "model": .string(model), "choices": [choice],
            "usage": JSON(encoding: Usage(r)), "timings": JSON(encoding: Timings(r)), "arbor": JSON(encoding: ArborReport(r, target: target)),
        ]
    }

    /// A streamed chunk: a delta (chat) or a piece of text (completions), or the finish.
    static func chunk(chat: Bool, id: String, created: Int, model: String, role: Bool = false, content: String?,
                      drafted: Bool? = nil, finish: String? = nil) -> JSON {
        var delta: [String: JSON] = [:]
        if role { delta["role"] = "assistant" }
        if let content { delta["content"] = .string(content) }
        var choice: [String: JSON] = ["index": 0, "finish_reason": finish.map(JSON.string) ?? nil, "logprobs": nil]
        if chat { choice["delta"] = .object(delta) } else { choice["text"] = .string(content ?? "") }
        var out: [String: JSON] = [
            "id": .string(id), "object": .string(chat ? "chat.completion.chunk" : "text_completion"), "created": .int(created),
            "model": .string(model), "choices": [.object(choice)],
        ]
        if let drafted { out["arbor"] = ["drafted": .bool(drafted)] }
        return .object(out)
    }

    /// The last chunk when usage was asked for: no choices, the usage, timings and Arbor's report.
    static func usageChunk(chat: Bool, id: String, created: Int, model: String, result r: GenerationResult, target: String) -> JSON {
        [
            "id": .string(id), "object": .string(chat ? "chat.completion.chunk" : "text_completion"), "created": .int(created),
            "model": .string(model), "choices": [], "usage": JSON(encoding: Usage(r)), "timings": JSON(encoding: Timings(r)),
            "arbor": JSON(encoding: ArborReport(r, target: target)),
        ]
    }
}
