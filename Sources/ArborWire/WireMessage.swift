/// The messages of Arbor's verification protocol (see docs/PROTOCOL.md for the bytes).
///
/// A connection carries at most one session at a time: hello → server info → open session →
/// prefill (one or more chunks) → verify/result rounds → close. Ping/pong may be sent at any time
/// after hello. Every message is one frame; `WireCodec` turns them into bytes and back.
///
/// Extensions within version 1 are new message types (an old peer skips a frame of unknown
/// type): `capabilities` asks a server for `serverDetails` (its price, energy source and target
/// profile) and, with `ClientCapabilities.roundCosts`, for `resultCost` frames in place of
/// `result` (each round's CPU time and energy).
public enum WireMessage: Equatable, Sendable {
    case hello(Hello)
    case serverInfo(ServerInfo)
    case openSession(OpenSession)
    case sessionOpened(SessionOpened)
    case prefill(Prefill)
    case prefilled(Prefilled)
    case verify(Verify)
    case result(RoundResult)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case close
    case error(ErrorFrame)
    case capabilities(ClientCapabilities)
    case serverDetails(ServerDetails)
    case resultCost(ResultCost)
    case decodeQuery
    case decodeOffer(DecodeOffer)
    case decode(Decode)
    case decoded(Decoded)
    case listModels
    case modelList(ModelList)
    case selectModel(SelectModel)
    case admission(Admission)

    /// The frame type byte of each message.
    public var type: WireMessageType {
        switch self {
        case .hello: .hello
        case .serverInfo: .serverInfo
        case .openSession: .openSession
        case .sessionOpened: .sessionOpened
        case .prefill: .prefill
        case .prefilled: .prefilled
        case .verify: .verify
        case .result: .result
        case .ping: .ping
        case .pong: .pong
        case .close: .close
        case .error: .error
        case .capabilities: .capabilities
        case .serverDetails: .serverDetails
        case .resultCost: .resultCost
        case .decodeQuery: .decodeQuery
        case .decodeOffer: .decodeOffer
        case .decode: .decode
        case .decoded: .decoded
        case .listModels: .listModels
        case .modelList: .modelList
        case .selectModel: .selectModel
        case .admission: .admission
        }
    }
}

/// Frame type bytes.
public enum WireMessageType: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case serverInfo = 0x02
    case openSession = 0x03
    case sessionOpened = 0x04
    case prefill = 0x05
    case prefilled = 0x06
    case verify = 0x07
    case result = 0x08
    case ping = 0x09
    case pong = 0x0A
    case close = 0x0B
    case error = 0x0C
    /// Extension (client → server): what the client understands; answered with `serverDetails`.
    case capabilities = 0x0D
    /// Extension (server → client): price, energy source, target profile.
    case serverDetails = 0x0E
    /// Extension (server → client): `result` plus the round's CPU time and energy.
    case resultCost = 0x0F
    /// Extension (client → server): does the server decode tokens by itself (run-ahead rounds)?
    case decodeQuery = 0x10
    /// Extension (server → client): the answer to `decodeQuery`, with the most tokens per `decode`.
    case decodeOffer = 0x11
    /// Extension (client → server): decode up to `count` tokens with the target alone.
    case decode = 0x12
    /// Extension (server → client): the tokens a `decode` produced and what they cost.
    case decoded = 0x13
    /// Extension (client → server): which target models does the server serve?
    case listModels = 0x14
    /// Extension (server → client): the answer to `listModels`.
    case modelList = 0x15
    /// Extension (client → server): use this model for the connection's next sessions; answered
    /// with that model's `serverInfo`.
    case selectModel = 0x16
    /// Extension (server → client): hello was accepted but no session slot is free — the client
    /// is queued (its place and an estimated wait), or the queue is full (retry after).
    case admission = 0x17
}

/// Client → server, first frame of a connection.
public struct Hello: Equatable, Sendable {
    /// The shared secret of `arbor serve --auth-token-file` (empty when the server has none).
    public var authToken: String
    /// A free-form client name for logs.
    public var clientName: String
    public init(authToken: String, clientName: String) {
        self.authToken = authToken
        self.clientName = clientName
    }
}

/// Server → client, the answer to an accepted hello: what the server runs and its limits.
public struct ServerInfo: Equatable, Sendable {
    public var serverName: String
    public var modelName: String
    /// `Tokenizer.vocabularyFingerprint` of the target; a client refuses a server whose value
    /// differs from its drafter's.
    public var vocabularyHash: UInt64
    public var vocabularySize: UInt32
    public var contextLength: UInt32
    /// Most nodes in one verify frame.
    public var maxTreeNodes: UInt32
    /// Most tokens one session may hold (prompt + output + one tree).
    public var maxSessionTokens: UInt32
    /// Largest frame the server accepts (bytes after the length field).
    public var maxFrameBytes: UInt32
    public init(serverName: String, modelName: String, vocabularyHash: UInt64, vocabularySize: UInt32,
                contextLength: UInt32, maxTreeNodes: UInt32, maxSessionTokens: UInt32, maxFrameBytes: UInt32) {
        self.serverName = serverName
        self.modelName = modelName
        self.vocabularyHash = vocabularyHash
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.maxTreeNodes = maxTreeNodes
        self.maxSessionTokens = maxSessionTokens
        self.maxFrameBytes = maxFrameBytes
    }
}

/// The target's sampling configuration, as carried on the wire (mirrors `SamplingParameters`).
public struct WireSampling: Equatable, Sendable {
    public var temperature: Float
    public var topK: UInt32
    public var topP: Float
    public var minP: Float
    public var repetitionPenalty: Float
    public var repetitionLastN: UInt32
    public var seed: UInt64
    public init(temperature: Float, topK: UInt32, topP: Float, minP: Float, repetitionPenalty: Float, repetitionLastN: UInt32, seed: UInt64) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.repetitionLastN = repetitionLastN
        self.seed = seed
    }
}

/// Client → server: start a session (one request's worth of target state).
public struct OpenSession: Equatable, Sendable {
    public var sampling: WireSampling
    /// Most tokens the session will hold (prompt + output + one tree); sizes the KV cache.
    public var capacity: UInt32
    /// Tokens the target must never produce (e.g. end-of-generation when ignoring EOS).
    public var suppressedTokens: [UInt32]
    public init(sampling: WireSampling, capacity: UInt32, suppressedTokens: [UInt32] = []) {
        self.sampling = sampling
        self.capacity = capacity
        self.suppressedTokens = suppressedTokens
    }
}

/// Server → client: the session is open.
public struct SessionOpened: Equatable, Sendable {
    public var sessionID: UInt32
    /// The capacity granted (equal to the one asked for).
    public var capacity: UInt32
    public init(sessionID: UInt32, capacity: UInt32) {
        self.sessionID = sessionID
        self.capacity = capacity
    }
}

/// Client → server: a chunk of the prompt. The server scores the prompt when the final chunk
/// arrives; the prompt's last token stays pending (it is scored with the first tree).
public struct Prefill: Equatable, Sendable {
    public var isFinal: Bool
    public var tokens: [UInt32]
    public init(isFinal: Bool, tokens: [UInt32]) {
        self.isFinal = isFinal
        self.tokens = tokens
    }
}

/// Server → client: the prompt has been read.
public struct Prefilled: Equatable, Sendable {
    /// Tokens committed in the session (the whole prompt).
    public var committedTokens: UInt32
    /// Server compute time for the prefill.
    public var computeMilliseconds: Float
    public init(committedTokens: UInt32, computeMilliseconds: Float) {
        self.committedTokens = committedTokens
        self.computeMilliseconds = computeMilliseconds
    }
}

/// A sparse probability distribution over the vocabulary: the tokens with non-zero probability.
public struct SparseDistribution: Equatable, Sendable {
    public var tokens: [UInt32]
    public var probabilities: [Float]
    public init(tokens: [UInt32], probabilities: [Float]) {
        self.tokens = tokens
        self.probabilities = probabilities
    }
}

/// Client → server: one round's draft tree.
public struct Verify: Equatable, Sendable {
    /// Chosen by the client, echoed in the result (and in an error about this round).
    public var round: UInt32
    /// The drafted token of each node, in topological order.
    public var tokens: [UInt32]
    /// Each node's parent, -1 for a root (a child of the pending token).
    public var parents: [Int32]
    /// Distributions that sampled nodes were drawn from (the p/q rule); empty for deterministic
    /// drafts.
    public var distributions: [SparseDistribution]
    /// Per node, an index into `distributions`, or `Verify.deterministic`. Empty when
    /// `distributions` is empty.
    public var distributionIndex: [UInt16]

    public static let deterministic: UInt16 = 0xFFFF

    public init(round: UInt32, tokens: [UInt32], parents: [Int32], distributions: [SparseDistribution] = [], distributionIndex: [UInt16] = []) {
        self.round = round
        self.tokens = tokens
        self.parents = parents
        self.distributions = distributions
        self.distributionIndex = distributionIndex
    }
}

/// Server → client: the verdict on a tree.
public struct RoundResult: Equatable, Sendable {
    public var round: UInt32
    /// Accepted node indices, root to leaf.
    public var acceptedNodes: [UInt16]
    /// The target's own next token after the accepted path.
    public var nextToken: UInt32
    /// Tokens scored in the forward pass (pending token + tree).
    public var batchSize: UInt16
    /// Server time in the target's forward pass.
    public var targetMilliseconds: Float
    /// Server time turning logits into the verdict.
    public var samplingMilliseconds: Float
    /// Time the round waited for the model behind other sessions' work.
    public var queueMilliseconds: Float
    public init(round: UInt32, acceptedNodes: [UInt16], nextToken: UInt32, batchSize: UInt16,
                targetMilliseconds: Float, samplingMilliseconds: Float, queueMilliseconds: Float) {
        self.round = round
        self.acceptedNodes = acceptedNodes
        self.nextToken = nextToken
        self.batchSize = batchSize
        self.targetMilliseconds = targetMilliseconds
        self.samplingMilliseconds = samplingMilliseconds
        self.queueMilliseconds = queueMilliseconds
    }
}

/// Client → server (extension 0x0D): the optional features this client understands, as a u32 of
/// flags. Valid after hello while no session is open; the server answers `serverDetails`. Bits
/// the server does not know are ignored. A server from before the extension answers
/// `error unknownType` (non-fatal): the client then carries on without extensions.
public struct ClientCapabilities: OptionSet, Equatable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Answer every verify with `resultCost` (the result plus its CPU time and energy) instead
    /// of `result`.
    public static let roundCosts = ClientCapabilities(rawValue: 1 << 0)
}

/// How a server obtains the energy figures it reports.
public enum WireEnergySource: UInt8, Equatable, Sendable, CaseIterable {
    /// No energy figures.
    case none = 0
    /// RAPL's package energy counter, the difference across each pass.
    case measured = 1
    /// Process CPU time of each pass × `ServerDetails.wattsPerCore`.
    case modelled = 2
}

/// One point of a target profile: the time of one target pass of `batchSize` tokens.
public struct TargetTiming: Equatable, Sendable {
    public var batchSize: UInt16
    public var milliseconds: Float
    public init(batchSize: UInt16, milliseconds: Float) {
        self.batchSize = batchSize
        self.milliseconds = milliseconds
    }
}

/// Server → client (extension 0x0E), the answer to `capabilities`: what the server's time costs
/// and how fast its target is.
public struct ServerDetails: Equatable, Sendable {
    /// The advertised price of the server's time, per hour (in a currency the operator and its
    /// clients agree on); nil when not advertised (a negative value on the wire).
    public var pricePerHour: Float?
    /// Where the energy in `resultCost` frames comes from.
    public var energySource: WireEnergySource
    /// The energy model's active power per busy core, W (0 when the energy is measured).
    public var wattsPerCore: Float
    /// Target pass times by batch size, measured when the server started (`--profile-target`);
    /// empty when it was not profiled.
    public var targetProfile: [TargetTiming]

    public init(pricePerHour: Float?, energySource: WireEnergySource, wattsPerCore: Float, targetProfile: [TargetTiming] = []) {
        self.pricePerHour = pricePerHour
        self.energySource = energySource
        self.wattsPerCore = wattsPerCore
        self.targetProfile = targetProfile
    }
}

/// Server → client (extension 0x0F): a `result` with what the round's target pass cost. Sent in
/// place of `result` to a client that asked for `ClientCapabilities.roundCosts`.
public struct ResultCost: Equatable, Sendable {
    /// The verdict, exactly as in a `result` frame.
    public var result: RoundResult
    /// CPU time of the target pass (all the server's threads); in a pass merged with other
    /// sessions' rounds, this round's share by tokens.
    public var targetCPUMilliseconds: Float
    /// Energy of the target pass, J (its share in a merged pass).
    public var targetJoules: Float
    /// How `targetJoules` was obtained (`.none`: the server has no figure).
    public var energySource: WireEnergySource
    public init(result: RoundResult, targetCPUMilliseconds: Float, targetJoules: Float, energySource: WireEnergySource) {
        self.result = result
        self.targetCPUMilliseconds = targetCPUMilliseconds
        self.targetJoules = targetJoules
        self.energySource = energySource
    }
}

/// One target model a server offers (extension 0x15).
public struct ServedModel: Equatable, Sendable {
    public var name: String
    public var vocabularyHash: UInt64
    public var vocabularySize: UInt32
    public var contextLength: UInt32
    /// Whether it is in memory now (else the first session for it loads it).
    public var loaded: Bool
    /// Size of its file, bytes.
    public var fileBytes: UInt64

    public init(name: String, vocabularyHash: UInt64, vocabularySize: UInt32, contextLength: UInt32, loaded: Bool, fileBytes: UInt64) {
        self.name = name
        self.vocabularyHash = vocabularyHash
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.loaded = loaded
        self.fileBytes = fileBytes
    }
}

/// Server → client (extension 0x15), the answer to `listModels`: every model, and which one this
/// connection's sessions use now (an index into `models`).
public struct ModelList: Equatable, Sendable {
    public var selected: UInt16
    public var models: [ServedModel]
    public init(selected: UInt16, models: [ServedModel]) {
        self.selected = selected
        self.models = models
    }
}

/// Client → server (extension 0x16): the model the connection's next sessions use.
public struct SelectModel: Equatable, Sendable {
    public var name: String
    public init(name: String) { self.name = name }
}

/// Server → client (extension 0x17), sent in place of `serverInfo` when a hello is accepted but
/// every session slot is taken. `queued`: the connection waits in a first-come-first-served queue
/// at `position` (1 = next); `serverInfo` follows when a slot frees, or a fatal `serverBusy` when
/// `deadlineMilliseconds` passes first. `full`: the queue has no room either; a fatal
/// `serverBusy` follows and the client should retry after `waitMilliseconds`.
public struct Admission: Equatable, Sendable {
    public enum State: UInt8, Sendable {
        case queued = 1
        case full = 2
    }
    public var state: State
    /// Place in the queue, 1 = next (0 when full).
    public var position: UInt32
    /// Queued: the server's estimate of the wait. Full: retry after this long.
    public var waitMilliseconds: UInt32
    /// Queued: the longest the server keeps the connection waiting (a client that waits less may
    /// give up before it would have been let in). Full: 0.
    public var deadlineMilliseconds: UInt32
    public init(state: State, position: UInt32, waitMilliseconds: UInt32, deadlineMilliseconds: UInt32) {
        self.state = state
        self.position = position
        self.waitMilliseconds = waitMilliseconds
        self.deadlineMilliseconds = deadlineMilliseconds
    }
}

/// Server → client (extension 0x11), the answer to `decodeQuery`: this server decodes tokens by
/// itself on request (`decode`), at most `maxTokens` per request.
public struct DecodeOffer: Equatable, Sendable {
    public var maxTokens: UInt16
    public init(maxTokens: UInt16) { self.maxTokens = maxTokens }
}

/// Client → server (extension 0x12): a run-ahead round. The target decodes `count` tokens by
/// itself — the pending token scored, the next token drawn with the session's sampling, and so
/// on — stopping early after an end-of-generation token. Valid where `verify` is.
public struct Decode: Equatable, Sendable {
    /// Chosen by the client, echoed in `decoded` (and in an error about this round).
    public var round: UInt32
    /// Tokens to decode, 1 ≤ count ≤ the offer's `maxTokens`.
    public var count: UInt16
    public init(round: UInt32, count: UInt16) {
        self.round = round
        self.count = count
    }
}

/// Server → client (extension 0x13): what a `decode` produced, in order (the first is the
/// target's own token after the pending one, as `nextToken` of a result), and what it cost,
/// summed over its target passes.
public struct Decoded: Equatable, Sendable {
    public var round: UInt32
    public var tokens: [UInt32]
    public var targetMilliseconds: Float
    public var samplingMilliseconds: Float
    /// Time the passes waited for the model behind other sessions' work.
    public var queueMilliseconds: Float
    public var targetCPUMilliseconds: Float
    public var targetJoules: Float
    public var energySource: WireEnergySource
    public init(round: UInt32, tokens: [UInt32], targetMilliseconds: Float, samplingMilliseconds: Float, queueMilliseconds: Float,
                targetCPUMilliseconds: Float, targetJoules: Float, energySource: WireEnergySource) {
        self.round = round
        self.tokens = tokens
        self.targetMilliseconds = targetMilliseconds
        self.samplingMilliseconds = samplingMilliseconds
        self.queueMilliseconds = queueMilliseconds
        self.targetCPUMilliseconds = targetCPUMilliseconds
        self.targetJoules = targetJoules
        self.energySource = energySource
    }
}

/// Either side: something went wrong. `round` names the verify round it concerns (0: none).
public struct ErrorFrame: Equatable, Sendable, Error, CustomStringConvertible {
    public var code: WireErrorCode
    public var round: UInt32
    public var message: String
    public init(code: WireErrorCode, round: UInt32 = 0, message: String) {
        self.code = code
        self.round = round
        self.message = message
    }
    public var description: String { "\(code) (\(code.rawValue)): \(message)" }
}

/// Error codes. Codes marked *fatal* end the connection after the error frame is sent.
public enum WireErrorCode: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// Fatal: the bytes are not a frame (bad length, truncated fields, invalid UTF-8, …).
    case malformedFrame = 1
    /// Fatal: the length field exceeds the receiver's frame limit.
    case frameTooLarge = 2
    /// The frame type is not one this side knows (the frame is skipped).
    case unknownType = 3
    /// Fatal: the frame's protocol version is not supported.
    case unsupportedVersion = 4
    /// Fatal: missing or wrong auth token.
    case unauthorized = 5
    /// The message is not valid in the connection's state (e.g. verify before prefill).
    case unexpectedMessage = 6
    /// The tree has more nodes than the server allows or than the session has room for.
    case treeTooLarge = 7
    /// The prompt does not fit the session's capacity.
    case promptTooLarge = 8
    /// A token id is outside the target's vocabulary.
    case tokenOutOfVocabulary = 9
    /// The parents array does not describe a tree in topological order.
    case notATree = 10
    /// Sampling parameters out of range, or a malformed draft distribution.
    case invalidParameters = 11
    /// Fatal: the server is at its session limit.
    case serverBusy = 12
    /// The session asks for more memory (capacity) than one session may have.
    case sessionLimit = 13
    /// Fatal: the server is shutting down.
    case shuttingDown = 14
    /// Fatal: a frame, the handshake or the session did not complete in time.
    case timeout = 15
    /// The model could not be loaded or failed while computing.
    case internalError = 16
    /// `selectModel` named a model the server does not serve (extension; non-fatal).
    case unknownModel = 17
    /// Fatal: the server speaks TLS only and the client sent plain frames (or the reverse).
    case tlsRequired = 18

    /// Whether the sender closes the connection after this error.
    public var isFatal: Bool {
        switch self {
        case .malformedFrame, .frameTooLarge, .unsupportedVersion, .unauthorized, .serverBusy, .shuttingDown, .timeout, .tlsRequired: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .malformedFrame: "malformed frame"
        case .frameTooLarge: "frame too large"
        case .unknownType: "unknown frame type"
        case .unsupportedVersion: "unsupported protocol version"
        case .unauthorized: "unauthorized"
        case .unexpectedMessage: "unexpected message"
        case .treeTooLarge: "tree too large"
        case .promptTooLarge: "prompt too large"
        case .tokenOutOfVocabulary: "token out of vocabulary"
        case .notATree: "not a tree"
        case .invalidParameters: "invalid parameters"
        case .serverBusy: "server busy"
        case .sessionLimit: "session limit"
        case .shuttingDown: "shutting down"
        case .timeout: "timeout"
        case .internalError: "internal error"
        case .unknownModel: "unknown model"
        case .tlsRequired: "TLS required"
        }
    }
}
