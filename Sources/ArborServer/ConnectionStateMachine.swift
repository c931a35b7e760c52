import ArborEngine
import ArborWire

/// The protocol as seen by one server connection: which message is valid when, and what to do
/// about it. Pure logic — no I/O, no model — so every path is tested without sockets; the NIO
/// `ConnectionHandler` carries out the actions.
///
///     awaitingHello ─hello→ ready ─open→ prefilling ─final prefill→ waiting → active
///           │ no free slot  ↑ slot freed
///           └──→ queued ────┘
///                             ↑ ⟲ capabilities                         ↑       │ verify
///                             └──────────── close ───────────────────  └─ waiting ←┘
///
/// The cost extension (`capabilities` → `serverDetails`, then `resultCost` in place of
/// `result`) is answered only when the machine has `details`; without them the three new frame
/// types get `unknownType` in every phase, exactly as from a server that predates them.
///
/// The decode extension (`decodeQuery` → `decodeOffer`, then `decode` → `decoded` wherever
/// `verify` is valid: a run-ahead round, the target decoding tokens by itself) likewise exists
/// only when `maxDecodeTokens` > 0.
///
/// The models extension (`listModels` → `modelList`, `selectModel` → that model's `serverInfo`,
/// both with no session open) exists when the machine has `models`; the first is the one hello
/// answers with, and sessions use the selected one.
struct ConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingHello
        /// Past hello, no session.
        case ready
        /// Past hello, waiting for a session slot (only `ping` is answered).
        case queued
        /// Session open, prompt chunks arriving.
        case prefilling
        /// Model work in flight for this connection.
        case waiting
        /// Session ready for the next round.
        case active
        /// An error frame that ends the connection was sent.
        case closed
    }

    enum Action: Equatable {
        case none
        case send(WireMessage)
        /// Send this error, then close the connection.
        case fail(ErrorFrame)
        /// Check the server's session limit, then answer with server info.
        case acceptHello(clientName: String)
        /// Answer `modelList` (which models are loaded is the server's to say).
        case listModels
        /// Create the session and answer `sessionOpened`.
        case openSession(SessionSetup)
        /// Read the prompt on the model.
        case prefill([Int32])
        /// Score the tree on the model.
        case verify(TokenTree, round: UInt32)
        /// Decode up to `count` tokens with the target alone.
        case decode(count: Int, round: UInt32)
        /// Release the session (the connection stays).
        case endSession
    }

    private(set) var phase = Phase.awaitingHello
    private(set) var setup: SessionSetup?
    private(set) var committed = 0
    /// Whether the client asked for `resultCost` frames (`ClientCapabilities.roundCosts`).
    private(set) var sendsRoundCosts = false
    private var prompt: [Int32] = []
    private let baseValidator: RequestValidator
    /// The models a client may choose from (empty: the models extension is off) and its choice.
    let models: [ModelChoice]
    private(set) var selected = 0
    let authToken: String?
    /// What `capabilities` is answered with; nil: the extension is off (an old server).
    let details: ServerDetails?
    /// Most tokens per `decode`; 0: the decode extension is off (an older server).
    let maxDecodeTokens: Int

    init(validator: RequestValidator, authToken: String?, details: ServerDetails? = nil, maxDecodeTokens: Int = 0, models: [ModelChoice] = []) {
        baseValidator = validator
        self.authToken = authToken
        self.details = details
        self.maxDecodeTokens = maxDecodeTokens
        self.models = models
    }

    /// The limits of the selected model.
    var validator: RequestValidator { models.isEmpty ? baseValidator : models[selected].validator }

    static let decodeTypes: [WireMessageType] = [.decodeQuery, .decodeOffer, .decode, .decoded]
    static let modelTypes: [WireMessageType] = [.listModels, .modelList, .selectModel]

    var hasSession: Bool { setup != nil }

    mutating func receive(_ message: WireMessage) -> Action {
        guard phase != .closed else { return .none }
        if details == nil && [.capabilities, .serverDetails, .resultCost].contains(message.type)
            || maxDecodeTokens == 0 && Self.decodeTypes.contains(message.type)
            || models.isEmpty && Self.modelTypes.contains(message.type) {
            // What a server from before the extension does: the frame type is unknown to it.
            return .send(.error(ErrorFrame(
                code: .unknownType, message: "frame type 0x\(String(message.type.rawValue, radix: 16)) is not part of protocol version \(WireCodec.version)")))
        }
        switch message {
        case let .hello(h):
            guard phase == .awaitingHello else { return unexpected(message, "hello was already received") }
            if let authToken, !Self.constantTimeEqual(authToken, h.authToken) {
                return fatal(ErrorFrame(code: .unauthorized, message: h.authToken.isEmpty ? "this server needs an auth token" : "wrong auth token"))
            }
            phase = .ready
            return .acceptHello(clientName: h.clientName)
        case .ping(let nonce):
            return .send(.pong(nonce: nonce))
        case _ where phase == .awaitingHello:
            return fatal(ErrorFrame(code: .unauthorized, message: "the first frame must be hello, got \(message.type)"))
        case _ where phase == .queued:
            switch message {
            case .close, .error: return .none
            default: return unexpected(message, "the connection is queued for a session slot (wait for serverInfo)")
            }
        case let .openSession(m):
            guard phase == .ready else { return unexpected(message, phase == .waiting ? "a request is in flight" : "a session is already open (close it first)") }
            do {
                let s = try validator.session(m)
                setup = s
                prompt = []
                committed = 0
                phase = .prefilling
                return .openSession(s)
            } catch {
                return .send(.error(error))
            }
        case let .prefill(m):
            guard phase == .prefilling, let setup else { return unexpected(message, "prefill needs a freshly opened session") }
            do {
                prompt += try validator.prompt(m.tokens, soFar: prompt.count, capacity: setup.capacity)
            } catch {
                return .send(.error(error))
            }
            guard m.isFinal else { return .none }
            guard !prompt.isEmpty else { return .send(.error(ErrorFrame(code: .invalidParameters, message: "the prompt is empty"))) }
            phase = .waiting
            let p = prompt
            prompt = []
            return .prefill(p)
        case let .verify(m):
            guard phase == .active, let setup else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "verify needs a session whose prompt was read", round: m.round)
            }
            do {
                let tree = try validator.tree(m, committed: committed, capacity: setup.capacity)
                phase = .waiting
                return .verify(tree, round: m.round)
            } catch {
                return .send(.error(error))
            }
        case let .decode(m):
            guard phase == .active, let setup else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "decode needs a session whose prompt was read", round: m.round)
            }
            let count = Int(m.count)
            guard count >= 1, count <= maxDecodeTokens else {
                return .send(.error(ErrorFrame(code: .invalidParameters, round: m.round,
                                               message: "decode of \(count) tokens: this server decodes 1…\(maxDecodeTokens) per request")))
            }
            // The last pass scores the token before the last one decoded: it must fit the cache.
            guard committed + count - 1 <= setup.capacity else {
                return .send(.error(ErrorFrame(code: .treeTooLarge, round: m.round,
                                               message: "decoding \(count) tokens does not fit: \(committed) tokens committed of the session's \(setup.capacity)")))
            }
            phase = .waiting
            return .decode(count: count, round: m.round)
        case .decodeQuery:
            guard phase == .ready else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "decodeQuery is asked while no session is open")
            }
            return .send(.decodeOffer(DecodeOffer(maxTokens: UInt16(maxDecodeTokens))))
        case .listModels:
            guard phase == .ready else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "models are listed while no session is open")
            }
            return .listModels
        case let .selectModel(m):
            guard phase == .ready else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "a model is selected while no session is open (close it first)")
            }
            guard let i = models.firstIndex(where: { $0.info.modelName == m.name }) else {
                return .send(.error(ErrorFrame(code: .unknownModel, message: "this server does not serve '\(m.name)' (it serves \(models.map(\.info.modelName).joined(separator: ", ")))")))
            }
            selected = i
            return .send(.serverInfo(models[i].info))
        case .close:
            guard setup != nil else { return .none }
            // While work is in flight the handler cancels it; the session is released either way.
            setup = nil
            prompt = []
            committed = 0
            phase = .ready
            return .endSession
        case let .capabilities(c):
            guard phase == .ready, let details else {
                return unexpected(message, phase == .waiting ? "a request is in flight" : "capabilities are set while no session is open")
            }
            sendsRoundCosts = c.contains(.roundCosts)
            return .send(.serverDetails(details))
        case .error:
            return .none
        case .serverInfo, .sessionOpened, .prefilled, .result, .pong, .serverDetails, .resultCost, .decodeOffer, .decoded, .modelList, .admission:
            return unexpected(message, "\(message.type) is sent by servers only")
        }
    }

    /// The prompt was read: `count` tokens committed.
    mutating func prefillCompleted(count: Int, milliseconds: Double) -> WireMessage {
        committed = count
        phase = .active
        return .prefilled(Prefilled(committedTokens: UInt32(count), computeMilliseconds: Float(milliseconds)))
    }

    /// A round finished: the accepted path and the target's own token are committed. The reply
    /// is `resultCost` if the client asked for round costs, else `result`.
    mutating func verifyCompleted(_ result: VerificationResult, round: UInt32, queueMilliseconds: Double) -> WireMessage {
        committed += result.acceptedNodes.count + 1
        phase = .active
        let r = RoundResult(
            round: round, acceptedNodes: result.acceptedNodes.map { UInt16($0) }, nextToken: UInt32(result.nextToken),
            batchSize: UInt16(clamping: result.batchSize), targetMilliseconds: Float(result.targetMilliseconds),
            samplingMilliseconds: Float(result.samplingMilliseconds), queueMilliseconds: Float(queueMilliseconds))
        guard sendsRoundCosts else { return .result(r) }
        let cost = result.cost
        return .resultCost(ResultCost(
            result: r, targetCPUMilliseconds: Float(cost.targetCPUMilliseconds), targetJoules: Float(cost.targetJoules),
            energySource: WireEnergySource(cost.targetEnergySource)))
    }

    /// A run-ahead round finished: `tokens` (the target's own, in order) are committed. `cost`
    /// sums the round's target passes.
    mutating func decodeCompleted(_ tokens: [Int32], cost: RoundCost, round: UInt32) -> WireMessage {
        committed += tokens.count
        phase = .active
        return .decoded(Decoded(
            round: round, tokens: tokens.map { UInt32(bitPattern: $0) }, targetMilliseconds: Float(cost.targetMilliseconds),
            samplingMilliseconds: Float(cost.samplingMilliseconds), queueMilliseconds: Float(cost.queueMilliseconds),
            targetCPUMilliseconds: Float(cost.targetCPUMilliseconds), targetJoules: Float(cost.targetJoules),
            energySource: WireEnergySource(cost.targetEnergySource)))
    }

    /// Model work failed: the session's cache can no longer be trusted, so it ends; the client
    /// may open a new one.
    mutating func workFailed(_ text: String, round: UInt32) -> [Action] {
        setup = nil
        committed = 0
        phase = .ready
        return [.endSession, .send(.error(ErrorFrame(code: .internalError, round: round, message: text)))]
    }

    /// Hello was accepted but every session slot is taken: the connection waits in the queue.
    mutating func queued() {
        guard phase == .ready else { return }
        phase = .queued
    }

    /// A queued connection got its slot (the handler sends `serverInfo`).
    mutating func admitted() {
        guard phase == .queued else { return }
        phase = .ready
    }

    /// The server refused the hello (session limit) or is shutting down.
    mutating func refuse(_ error: ErrorFrame) -> Action { fatal(error) }

    private mutating func fatal(_ error: ErrorFrame) -> Action {
        phase = .closed
        return .fail(error)
    }

    private func unexpected(_ m: WireMessage, _ why: String, round: UInt32 = 0) -> Action {
        .send(.error(ErrorFrame(code: .unexpectedMessage, round: round, message: "\(m.type) not expected: \(why)")))
    }

    /// Compares secrets without an early exit, so timing does not reveal a matching prefix.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}
