import ArborEngine
import ArborRuntime

/// The fields of `POST /v1/chat/completions` and `POST /v1/completions` that Arbor reads, named
/// as the OpenAI API and llama.cpp's server name them. Unknown fields are ignored, as both do.
struct CompletionRequest: Decodable, Sendable {
    var model: String?
    /// Chat: the conversation. Completions: nil.
    var messages: [Message]?
    /// Completions: the raw prompt.
    var prompt: Prompt?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var repeatPenalty: Double?
    var seed: Int64?
    var stop: Stop?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var logprobs: Logprobs?
    var topLogprobs: Int?
    var ignoreEOS: Bool?
    var speculative: Speculative?
    // Arbor's own (also accepted inside `speculative`).
    var drafter: String?
    var objective: String?
    var cs: CSValue?

    struct Message: Decodable, Sendable {
        var role: String
        var content: Content?

        /// A string, or a list of parts of which the text ones are joined.
        enum Content: Decodable, Sendable {
            case text(String)
            case parts([Part])

            struct Part: Decodable, Sendable {
                var type: String
                var text: String?
            }

            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { self = .text(s); return }
                self = .parts(try c.decode([Part].self))
            }

            func text() throws(APIError) -> String {
                switch self {
                case let .text(s): return s
                case let .parts(parts):
                    var out = ""
                    for p in parts {
                        guard p.type == "text", let t = p.text else {
                            throw .badRequest("only text content parts are supported (got '\(p.type)')", param: "messages")
                        }
                        out += t
                    }
                    return out
                }
            }
        }
    }

    /// A string, or a list holding one string.
    enum Prompt: Decodable, Sendable {
        case text(String)
        case list([String])

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .text(s); return }
            self = .list(try c.decode([String].self))
        }
    }

    /// A string or a list of strings.
    struct Stop: Decodable, Sendable {
        var values: [String]
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { values = []; return }
            if let s = try? c.decode(String.self) { values = [s]; return }
            values = try c.decode([String].self)
        }
    }

    /// Chat: a boolean; completions: an integer (how many top tokens).
    struct Logprobs: Decodable, Sendable {
        var requested: Bool
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { requested = false; return }
            if let b = try? c.decode(Bool.self) { requested = b; return }
            requested = try c.decode(Int.self) > 0
        }
    }

    /// A number (0…1 or a percentage) or a name (`tps`, `balanced`, `cost`).
    struct CSValue: Decodable, Sendable {
        var text: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let d = try? c.decode(Double.self) { text = String(d); return }
            text = try c.decode(String.self)
        }
    }

    struct StreamOptions: Decodable, Sendable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    struct Speculative: Decodable, Sendable {
        var nMax: Int?
        var nMin: Int?
        var drafter: String?
        var objective: String?
        var cs: CSValue?
        var proactive: Bool?
        var adaptive: Bool?
        enum CodingKeys: String, CodingKey {
            case nMax = "n_max", nMin = "n_min", drafter, objective, cs, proactive, adaptive
        }
    }

    enum CodingKeys: String, CodingKey {
        case model, messages, prompt, temperature, seed, stop, stream, n, logprobs, speculative, drafter, objective, cs
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", topP = "top_p", topK = "top_k"
        case minP = "min_p", repeatPenalty = "repeat_penalty", streamOptions = "stream_options", topLogprobs = "top_logprobs"
        case ignoreEOS = "ignore_eos"
    }
}

/// A request checked and turned into what the runtime takes.
struct ValidatedRequest: Sendable {
    var prompt: [Int32]
    var parameters: GenerationParameters
    var settings: RequestSettings
    var stream: Bool
    var includeUsage: Bool
}

extension CompletionRequest {
    /// Checks every field and builds the generation; a bad value is a 400 naming the field.
    func validated(chat: Bool, runtime: Runtime, modelNames: [String]) throws(APIError) -> ValidatedRequest {
        if let model, !model.isEmpty, !modelNames.contains(model) {
            throw APIError(status: 400, message: "model '\(model)' is not served here (available: \(modelNames.joined(separator: ", ")))",
                           type: "invalid_request_error", param: "model", code: "model_not_found")
        }
        if let n, n != 1 { throw .badRequest("only n = 1 is supported", param: "n") }
        if logprobs?.requested == true || (topLogprobs ?? 0) > 0 {
            throw .badRequest("logprobs are not supported by this server", param: "logprobs")
        }
        let promptTokens: [Int32]
        if chat {
            guard let messages, !messages.isEmpty else { throw .badRequest("'messages' must be a non-empty list", param: "messages") }
            if prompt != nil { throw .badRequest("chat completions take 'messages', not 'prompt'", param: "prompt") }
            var chatMessages: [ChatMessage] = []
            for m in messages {
                guard ["system", "user", "assistant", "developer"].contains(m.role) else {
                    throw .badRequest("unknown role '\(m.role)' (system, user, assistant)", param: "messages")
                }
                chatMessages.append(ChatMessage(role: m.role == "developer" ? "system" : m.role, content: try m.content?.text() ?? ""))
            }
            do { promptTokens = try runtime.chatTokens(chatMessages) } catch {
                throw .badRequest("cannot format the chat: \(error)", param: "messages")
            }
        } else {
            let text: String
            switch prompt {
            case let .text(s)?: text = s
            case let .list(l)? where l.count == 1: text = l[0]
            case .list?: throw .badRequest("'prompt' must be one string (batches are not supported)", param: "prompt")
            case nil: throw .badRequest("'prompt' is required", param: "prompt")
            }
            promptTokens = runtime.promptTokens(text)
        }
        guard !promptTokens.isEmpty else { throw .badRequest("the prompt is empty", param: chat ? "messages" : "prompt") }
        let context = runtime.contextLength
        guard promptTokens.count < context else {
            throw APIError(status: 400, message: "the prompt has \(promptTokens.count) tokens; the context holds \(context)",
                           type: "invalid_request_error", param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        let requested = maxCompletionTokens ?? maxTokens
        if let requested, requested <= 0 {
            throw .badRequest("max_tokens must be positive (got \(requested))", param: maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens")
        }
        let room = context - promptTokens.count
        if let requested, requested > room {
            throw APIError(status: 400, message: "the prompt (\(promptTokens.count) tokens) plus max_tokens (\(requested)) exceed the context of \(context) tokens",
                           type: "invalid_request_error", param: "max_tokens", code: "context_length_exceeded")
        }
        let maxTokens = requested ?? min(room, 4096)

        var sampling = SamplingParameters()
        if let t = temperature {
            guard t.isFinite, t >= 0, t <= 100 else { throw .badRequest("temperature must be between 0 and 100", param: "temperature") }
            sampling.temperature = Float(t)
        }
        if let p = topP {
            guard p > 0, p <= 1 else { throw .badRequest("top_p must be in (0, 1]", param: "top_p") }
            sampling.topP = Float(p)
        }
        if let k = topK {
            guard k >= 0 else { throw .badRequest("top_k must be ≥ 0", param: "top_k") }
            sampling.topK = k
        }
        if let m = minP {
            guard m >= 0, m <= 1 else { throw .badRequest("min_p must be in [0, 1]", param: "min_p") }
            sampling.minP = Float(m)
        }
        if let r = repeatPenalty {
            guard r > 0, r.isFinite else { throw .badRequest("repeat_penalty must be positive", param: "repeat_penalty") }
            sampling.repetitionPenalty = Float(r)
        }
        if sampling.isGreedy { sampling = .greedy }
        sampling.seed = seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0...UInt64.max)
        let stops = stop?.values ?? []
        guard stops.count <= 16 else { throw .badRequest("at most 16 stop strings", param: "stop") }

        var settings = RequestSettings()
        if let name = speculative?.drafter ?? drafter {
            if name == "auto" {
                throw .badRequest("drafter 'auto' needs the router, which this server does not have yet; choose none, ngram, suffix or model", param: "drafter")
            }
            do { settings.drafter = try DrafterChoice(parsing: name, draftModel: runtime.draftModels.first) } catch {
                throw .badRequest("\(error)", param: "drafter")
            }
            if case let .model(m)? = settings.drafter, !runtime.draftModels.contains(m) {
                // Bare "model" means the first draft model; "model:<alias>" names one.
                throw .badRequest("\(RuntimeError.draftModelNotLoaded(m, available: runtime.draftModels))", param: "drafter")
            }
        }
        if let o = speculative?.objective ?? objective {
            guard let objective = Objective(rawValue: o) else {
                throw .badRequest("unknown objective '\(o)' (\(Objective.allCases.map(\.rawValue).joined(separator: ", ")))", param: "objective")
            }
            settings.objective = objective
        }
        if let c = speculative?.cs ?? cs {
            do { settings.cs = try CostSensitivity(parsing: c.text) } catch { throw .badRequest("\(error)", param: "cs") }
        }
        if let n = speculative?.nMax {
            guard (1...256).contains(n) else { throw .badRequest("speculative.n_max must be 1…256", param: "speculative.n_max") }
            settings.maxDraftNodes = n
        }
        if let n = speculative?.nMin {
            guard n >= 0, n <= (settings.maxDraftNodes ?? 256) else { throw .badRequest("speculative.n_min must be 0…n_max", param: "speculative.n_min") }
            settings.minDraftNodes = n
        }
        settings.proactive = speculative?.proactive
        settings.adaptive = speculative?.adaptive
        if seed != nil, !sampling.isGreedy, settings.adaptive == nil {
            // A seeded sampled request wants the same text for the same seed. Speculative sampling
            // keeps the target's distribution whatever the trees are, but which sample a seed gives
            // depends on the trees, and adaptive sizing shapes them from timings and from what the
            // policy learned earlier. Fixed trees make the sample path a function of the seed (for
            // drafters whose drafts depend only on the context). `speculative.adaptive: true` overrides.
            settings.adaptive = false
        }
        let parameters = GenerationParameters(maxTokens: maxTokens, sampling: sampling, stopStrings: stops, stopAtEndOfText: !(ignoreEOS ?? false))
        return ValidatedRequest(prompt: promptTokens, parameters: parameters, settings: settings, stream: stream ?? false,
                                includeUsage: streamOptions?.includeUsage ?? false)
    }
}
