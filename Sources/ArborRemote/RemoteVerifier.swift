import ArborEngine
import ArborWire
import Foundation
import NIOCore
import NIOPosix

/// Where the target server is and how patiently to talk to it.
public struct RemoteTarget: Sendable {
    public var host: String
    public var port: Int
    /// The server's shared secret (empty when it has none).
    public var authToken: String
    public var clientName: String
    public var connectTimeout: TimeAmount
    /// Longest wait for any reply (a prefill of a long prompt on a busy server included).
    public var requestTimeout: TimeAmount
    /// Reconnections tried after the connection fails, with doubling back-off from `initialBackoff`.
    public var reconnectAttempts: Int
    public var initialBackoff: TimeAmount
    /// Prompt tokens per prefill frame.
    public var prefillChunk: Int
    /// The target model to use on a server that serves several (nil: the server's default). A
    /// server without the models extension serves only its default; naming another is an error.
    public var model: String?
    /// TLS settings (nil: plain TCP).
    public var tls: ClientTLS?
    /// Longest this client waits in a server's admission queue (nil: as long as the server keeps
    /// it there, so it never gives up before the server would have let it in).
    public var maxQueueWait: TimeAmount?

    public init(host: String, port: Int, authToken: String = "", clientName: String = "arbor",
                connectTimeout: TimeAmount = .seconds(5), requestTimeout: TimeAmount = .seconds(120),
                reconnectAttempts: Int = 5, initialBackoff: TimeAmount = .milliseconds(200), prefillChunk: Int = 8192) {
        self.host = host
        self.port = port
        self.authToken = authToken
        self.clientName = clientName
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.reconnectAttempts = reconnectAttempts
        self.initialBackoff = initialBackoff
        self.prefillChunk = prefillChunk
    }
}

/// TLS for the connection to `arbor serve`.
public struct ClientTLS: Sendable, Equatable {
    /// PEM file of the CA (or self-signed certificate) to trust; nil: the system's roots.
    public var caPath: String?
    /// The name the server's certificate must carry; nil: the host connected to.
    public var serverName: String?
    public init(caPath: String? = nil, serverName: String? = nil) {
        self.caPath = caPath
        self.serverName = serverName
    }
}

/// Errors of the user side of remote verification.
public enum RemoteError: Error, CustomStringConvertible {
    /// The server answered with an error frame.
    case server(ErrorFrame)
    /// The connection closed while waiting for a reply.
    case disconnected
    /// No reply within the request timeout.
    case timedOut(what: String, seconds: Double)
    /// Could not reach the server (after `attempts` tries, the last failing with `reason`).
    case unreachable(host: String, port: Int, attempts: Int, reason: String)
    /// The server's target uses another vocabulary than the drafter.
    case vocabularyMismatch(server: String, serverHash: UInt64, localHash: UInt64)
    /// The server replied with a message that makes no sense here.
    case protocolViolation(String)
    /// The verifier was called out of order (e.g. `send` twice without `receive`).
    case outOfOrder(String)
    /// TLS could not be set up or the handshake failed (wrong CA, wrong name, a plain server).
    case tls(String)
    /// The server stayed busy (no session slot, queue full or waited out) through every attempt.
    case busy(host: String, port: Int, attempts: Int, seconds: Double, detail: String)
    /// The server said it was shutting down, and was not back by the last attempt.
    case serverShutDown(host: String, port: Int, attempts: Int, seconds: Double)

    public var description: String {
        switch self {
        case let .server(e): "the server refused: \(e)"
        case .disconnected: "the server closed the connection"
        case let .timedOut(what, s): "no reply to \(what) within \(s) s"
        case let .unreachable(h, p, n, r): "cannot reach the target server at \(h):\(p) after \(n) attempt\(n == 1 ? "" : "s"): \(r)"
        case let .vocabularyMismatch(name, theirs, mine):
            "the server's model \(name) has another vocabulary (hash \(String(theirs, radix: 16)) vs the drafter's \(String(mine, radix: 16))): its tokens would not mean the same"
        case let .protocolViolation(s): "protocol violation: \(s)"
        case let .outOfOrder(s): "remote verifier called out of order: \(s)"
        case let .tls(s): "TLS: \(s)"
        case let .busy(h, p, n, t, d):
            "the target server at \(h):\(p) is busy: refused \(n) time\(n == 1 ? "" : "s") over \(String(format: "%.1f", t)) s (last: \(d))"
        case let .serverShutDown(h, p, n, t):
            "the target server at \(h):\(p) shut down, and was not back after \(n) attempt\(n == 1 ? "" : "s") over \(String(format: "%.1f", t)) s"
        }
    }

    /// Whether reconnecting may help (the connection, not the request, failed).
    var isTransient: Bool {
        switch self {
        case .disconnected, .timedOut, .unreachable: true
        case let .server(e): e.code == .shuttingDown || e.code == .timeout || e.code == .serverBusy
        default: false
        }
    }
}

/// A `Verifier` whose target runs in an `arbor serve` process, reached over TCP.
///
/// The session on the server mirrors this object's committed tokens; if the connection fails,
/// the verifier reconnects with back-off, opens a new session from the committed tokens and
/// repeats the round, so a restarted server resumes the generation exactly (greedy). Every wait
/// is bounded: a server that is gone for good ends in `RemoteError.unreachable`, never a hang.
/// Calls are made from one thread at a time, like any `Verifier`.
///
/// As a `PipelinedVerifier` it lets the caller draft while the server verifies: `send` writes
/// the verify frame and returns, `receive` waits for the verdict (resuming on a new connection
/// if the old one failed in between). After the handshake it asks the server for its
/// `serverDetails` and per-round costs (`capabilities`); a server from before that extension
/// answers `unknownType` and is used as before, with `serverDetails` nil.
///
/// As a `RunAheadVerifier` it asks a server that offers it (`decodeQuery` → `decodeOffer`) to
/// decode several tokens by itself in one exchange (`decode` → `decoded`); against a server
/// without the offer, a run-ahead round falls back to a plain round.
public final class RemoteVerifier: PipelinedVerifier, RunAheadVerifier {
    public let target: RemoteTarget
    /// The vocabulary hash of the drafter; a server with another one is refused.
    public let expectedVocabularyHash: UInt64?
    public private(set) var serverInfo: ServerInfo
    /// What the server advertised in answer to `capabilities` on the latest connection: its
    /// price per hour, how it obtains energy figures, its target profile. nil for a server from
    /// before the extension (it sends plain results, without CPU time or energy).
    public private(set) var serverDetails: ServerDetails?
    /// Costs of the current (or last) request.
    public private(set) var stats = TransportStats()
    /// The smallest ping round trip seen on any connection: the network alone, no server work
    /// (one ping follows each handshake).
    public private(set) var networkMilliseconds: Double?
    /// Most tokens the server decodes by itself per `decode` (0: it does not offer run-ahead).
    public private(set) var decodeOffer = 0
    /// Admission-queue waits of connections made outside a request (the first one, at init),
    /// carried into the next request's stats.
    private var carriedQueue = (connections: 0, milliseconds: 0.0)
    /// The retry-after of the server's last refusal for a full queue, ms.
    private var retryAfterMilliseconds: Double?

    private let group: any EventLoopGroup
    private var connection: Connection?
    private var request: VerificationRequest?
    /// Committed tokens including the pending one (what a resumed session must be rebuilt from).
    private var history: [Int32] = []
    private var round: UInt32 = 0
    /// The round sent and not yet received.
    private var inFlight: InFlight?

    private struct InFlight {
        let tree: TokenTree
        let round: UInt32
        /// Tokens asked of the target alone (a run-ahead round), else 0.
        let decodeCount: Int
        /// The request frame (for a run-ahead, within the offer of the connection it goes out on).
        var message: WireMessage
        /// The verify frame on its way; nil once it must be sent again (on a new connection).
        var outgoing: Outgoing?
    }

    /// Connects and completes the handshake (so `vocabularySize` and `contextLength` are known).
    public init(target: RemoteTarget, expectedVocabularyHash: UInt64?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.target = target
        self.expectedVocabularyHash = expectedVocabularyHash
        self.group = group
        serverInfo = ServerInfo(serverName: "", modelName: "", vocabularyHash: 0, vocabularySize: 0, contextLength: 0,
                                maxTreeNodes: 0, maxSessionTokens: 0, maxFrameBytes: 0)
        try withReconnects { try self.connect() }
    }

    deinit {
        inFlight?.outgoing?.pending.cancel()
        connection?.close()
    }

    public var vocabularySize: Int { Int(serverInfo.vocabularySize) }
    /// The session limit of the server (the most a request may hold).
    public var contextLength: Int { Int(min(serverInfo.contextLength, serverInfo.maxSessionTokens)) }
    public var transport: TransportStats? { stats }
    /// Most nodes the server takes in one tree (drafting budgets must stay within it).
    public var maxTreeNodes: Int { Int(serverInfo.maxTreeNodes) }
    public var maxRunAhead: Int { decodeOffer }

    public func begin(_ request: VerificationRequest) throws {
        guard !request.prompt.isEmpty else { throw GenerationError.emptyPrompt }
        abandonRoundInFlight()
        stats = TransportStats()
        stats.minimumPingMilliseconds = networkMilliseconds
        stats.queuedConnections = carriedQueue.connections
        stats.queueWaitMilliseconds = carriedQueue.milliseconds
        carriedQueue = (0, 0)
        self.request = request
        history = request.prompt
        round = 0
        try withReconnects {
            if self.connection == nil { try self.connect() }
            try self.openSession()
        }
    }

    /// `send(tree)` then `receive()`.
    public func verify(_ tree: TokenTree) throws -> VerificationResult {
        try send(tree)
        return try receive()
    }

    /// Writes the verify frame for `tree` and returns without waiting for the verdict (connecting
    /// and resuming the session first if the connection was lost). `receive()` must follow
    /// before the next `send`.
    public func send(_ tree: TokenTree) throws {
        guard request != nil else { throw SpeculativeError.notStarted }
        guard inFlight == nil else { throw RemoteError.outOfOrder("send while round \(round) awaits its receive") }
        guard tree.count <= Int(serverInfo.maxTreeNodes) else {
            throw SpeculativeError.treeTooLarge(nodes: tree.count, limit: Int(serverInfo.maxTreeNodes))
        }
        round &+= 1
        try launch(InFlight(tree: tree, round: round, decodeCount: 0, message: Self.verifyFrame(tree, round: round), outgoing: nil))
    }

    /// A run-ahead round: the server decodes up to `count` tokens by itself (fewer when it stops
    /// at an end-of-generation token or offers fewer; one, as a plain round, when the server does
    /// not offer run-ahead at all).
    public func runAhead(_ count: Int) throws -> VerificationResult {
        try runAhead(count, whileWaiting: {})
    }

    public func runAhead(_ count: Int, whileWaiting: () -> Void) throws -> VerificationResult {
        guard request != nil else { throw SpeculativeError.notStarted }
        guard inFlight == nil else { throw RemoteError.outOfOrder("run-ahead while round \(round) awaits its receive") }
        round &+= 1
        // The frame is made when it goes out (`frame(for:)`): within the offer of that connection.
        try launch(InFlight(tree: TokenTree(), round: round, decodeCount: max(1, count),
                            message: Self.verifyFrame(TokenTree(), round: round), outgoing: nil))
        whileWaiting()
        return try receive()
    }

    /// Sends `flight`'s request (connecting and resuming the session first if needed).
    private func launch(_ flight: InFlight) throws {
        var flight = flight
        try withReconnects {
            if self.connection == nil {
                try self.connect()
                try self.openSession()
            }
            flight.outgoing = try self.start(self.frame(for: &flight), what: flight.decodeCount > 0 ? "decode" : "verify")
        }
        inFlight = flight
    }

    /// The request frame of `flight` on the current connection: a run-ahead within this server's
    /// offer, or a plain round where there is none.
    private func frame(for flight: inout InFlight) -> WireMessage {
        guard flight.decodeCount > 0 else { return flight.message }
        flight.message = decodeOffer > 0
            ? .decode(Decode(round: flight.round, count: UInt16(min(flight.decodeCount, decodeOffer))))
            : Self.verifyFrame(TokenTree(), round: flight.round)
        return flight.message
    }

    /// Waits for the verdict on the tree last sent. If the connection fails before it arrives,
    /// reconnects, reopens the session from the committed tokens and sends the same tree again.
    public func receive() throws -> VerificationResult {
        guard var flight = inFlight else { throw RemoteError.outOfOrder("receive without a round sent") }
        inFlight = nil
        defer { flight.outgoing?.pending.cancel() }
        var reply: Exchange!
        try withReconnects {
            if flight.outgoing == nil {
                // The connection failed after the tree was sent: resume, then send it again.
                if self.connection == nil {
                    try self.connect()
                    try self.openSession()
                }
                flight.outgoing = try self.start(self.frame(for: &flight), what: flight.decodeCount > 0 ? "decode" : "verify")
            }
            let outgoing = flight.outgoing!
            flight.outgoing = nil
            reply = try self.finish(outgoing)
        }
        let tree = flight.tree
        let r: RoundResult, extra: ResultCost?
        switch reply.message {
        case let .result(plain): (r, extra) = (plain, nil)
        case let .resultCost(c): (r, extra) = (c.result, c)
        case let .decoded(d) where flight.decodeCount > 0: return try decoded(d, reply: reply, flight: flight)
        default: throw unexpected(reply.message, "a result")
        }
        guard r.round == flight.round, r.acceptedNodes.allSatisfy({ Int($0) < tree.count }) else {
            close()
            throw RemoteError.protocolViolation("result for round \(r.round) with nodes \(r.acceptedNodes) (sent round \(flight.round), \(tree.count) nodes)")
        }
        let accepted = r.acceptedNodes.map { Int($0) }
        for n in accepted { history.append(tree.tokens[n]) }
        history.append(Int32(bitPattern: r.nextToken))
        let server = Double(r.targetMilliseconds + r.samplingMilliseconds)
        stats.rounds += 1
        stats.roundBytes += reply.bytesSent + reply.bytesReceived
        stats.roundMilliseconds += reply.milliseconds
        stats.serverBusyMilliseconds += server
        stats.serverQueueMilliseconds += Double(r.queueMilliseconds)
        stats.perRound.append(RoundTransport(
            nodes: tree.count, accepted: accepted.count, bytesSent: reply.bytesSent, bytesReceived: reply.bytesReceived,
            roundTripMilliseconds: reply.milliseconds, serverMilliseconds: server, queueMilliseconds: Double(r.queueMilliseconds)))
        var result = VerificationResult(acceptedNodes: accepted, nextToken: Int32(bitPattern: r.nextToken), batchSize: Int(r.batchSize),
                                        targetMilliseconds: Double(r.targetMilliseconds), samplingMilliseconds: Double(r.samplingMilliseconds),
                                        roundMilliseconds: reply.milliseconds)
        result.cost.queueMilliseconds = Double(r.queueMilliseconds)
        result.cost.bytesUp = reply.bytesSent
        result.cost.bytesDown = reply.bytesReceived
        if let extra {
            result.cost.targetCPUMilliseconds = Self.amount(extra.targetCPUMilliseconds)
            result.cost.targetJoules = Self.amount(extra.targetJoules)
            result.cost.targetEnergySource = extra.energySource.energySource
        }
        return result
    }

    /// The result of a run-ahead round.
    private func decoded(_ d: Decoded, reply: Exchange, flight: InFlight) throws -> VerificationResult {
        guard d.round == flight.round, !d.tokens.isEmpty, d.tokens.count <= flight.decodeCount else {
            close()
            throw RemoteError.protocolViolation("decoded \(d.tokens.count) tokens for round \(d.round) (asked \(flight.decodeCount) in round \(flight.round))")
        }
        let tokens = d.tokens.map { Int32(bitPattern: $0) }
        history += tokens
        let server = Self.amount(d.targetMilliseconds) + Self.amount(d.samplingMilliseconds)
        stats.rounds += 1
        stats.roundBytes += reply.bytesSent + reply.bytesReceived
        stats.roundMilliseconds += reply.milliseconds
        stats.serverBusyMilliseconds += server
        stats.serverQueueMilliseconds += Self.amount(d.queueMilliseconds)
        stats.perRound.append(RoundTransport(
            nodes: 0, accepted: 0, bytesSent: reply.bytesSent, bytesReceived: reply.bytesReceived,
            roundTripMilliseconds: reply.milliseconds, serverMilliseconds: server, queueMilliseconds: Self.amount(d.queueMilliseconds)))
        var result = VerificationResult(acceptedNodes: [], nextToken: tokens[0], batchSize: 1,
                                        targetMilliseconds: Self.amount(d.targetMilliseconds), samplingMilliseconds: Self.amount(d.samplingMilliseconds),
                                        roundMilliseconds: reply.milliseconds)
        result.decodedTokens = Array(tokens.dropFirst())
        result.cost.queueMilliseconds = Self.amount(d.queueMilliseconds)
        result.cost.bytesUp = reply.bytesSent
        result.cost.bytesDown = reply.bytesReceived
        result.cost.targetCPUMilliseconds = Self.amount(d.targetCPUMilliseconds)
        result.cost.targetJoules = Self.amount(d.targetJoules)
        result.cost.targetEnergySource = d.energySource.energySource
        return result
    }

    public func end() {
        abandonRoundInFlight()
        if let connection, request != nil {
            // No reply to wait for: the server frees the session when it reads this.
            let frame = WireCodec.encode(.close)
            stats.bytesSent += frame.readableBytes
            connection.send(.close)
        }
        request = nil
        history = []
    }

    /// Measures the network's round trip with a ping (no server work involved). Not while a
    /// round is in flight (its reply is awaited first).
    @discardableResult
    public func ping() throws -> Double {
        guard inFlight == nil else { throw RemoteError.outOfOrder("ping while round \(round) awaits its receive") }
        if connection == nil { try withReconnects { try self.connect() } }
        let nonce = UInt64.random(in: 0...UInt64.max)
        let reply = try exchange(.ping(nonce: nonce), what: "ping")
        guard case .pong(nonce) = reply.message else { throw unexpected(reply.message, "pong \(nonce)") }
        networkMilliseconds = min(networkMilliseconds ?? .infinity, reply.milliseconds)
        stats.minimumPingMilliseconds = networkMilliseconds
        return reply.milliseconds
    }

    /// Closes the connection (a later call reconnects; a round in flight is resent by `receive`).
    public func close() {
        connection?.close()
        connection = nil
    }

    // MARK: Steps

    /// A round whose verdict will never be collected: the connection is dropped, since its reply
    /// could otherwise be taken for the answer to the next request.
    private func abandonRoundInFlight() {
        guard let flight = inFlight else { return }
        inFlight = nil
        flight.outgoing?.pending.cancel()
        close()
    }

    private func connect() throws {
        connection?.close()
        connection = nil
        let c = try Connection.open(target: target, group: group)
        connection = c
        // A hello may wait in the server's admission queue: its deadline follows the server's.
        let reply = try finish(start(.hello(Hello(authToken: target.authToken, clientName: target.clientName)), what: "hello",
                                     maxQueueWait: target.maxQueueWait))
        if let a = reply.admission, a.state == .queued {
            // Waited in the server's queue for a session slot: from hello to serverInfo.
            if request != nil {
                stats.queuedConnections += 1
                stats.queueWaitMilliseconds += reply.milliseconds
            } else {
                carriedQueue.connections += 1
                carriedQueue.milliseconds += reply.milliseconds
            }
        }
        guard case var .serverInfo(info) = reply.message else { throw unexpected(reply.message, "server info") }
        if let model = target.model, model != info.modelName {
            // The models extension: the connection's sessions use `model` from now on.
            do {
                let selected = try exchange(.selectModel(SelectModel(name: model)), what: "select model")
                guard case let .serverInfo(chosen) = selected.message else { throw unexpected(selected.message, "server info") }
                info = chosen
            } catch let RemoteError.server(e) where e.code == .unknownType {
                close()
                throw RemoteError.server(ErrorFrame(code: .unknownModel, message: "the server serves only \(info.modelName), not \(model)"))
            }
        }
        if let expectedVocabularyHash, info.vocabularyHash != expectedVocabularyHash {
            close()
            throw RemoteError.vocabularyMismatch(server: info.modelName, serverHash: info.vocabularyHash, localHash: expectedVocabularyHash)
        }
        serverInfo = info
        _ = try ping()
        try negotiate()
    }

    /// The models the server offers and which one this connection uses; a server without the
    /// models extension offers only the one its hello named. Not while a round is in flight.
    public func listModels() throws -> ModelList {
        guard inFlight == nil else { throw RemoteError.outOfOrder("listModels while round \(round) awaits its receive") }
        if connection == nil { try connect() }
        do {
            let reply = try exchange(.listModels, what: "list models")
            guard case let .modelList(list) = reply.message else { throw unexpected(reply.message, "a model list") }
            return list
        } catch let RemoteError.server(e) where e.code == .unknownType {
            let i = serverInfo
            return ModelList(selected: 0, models: [ServedModel(name: i.modelName, vocabularyHash: i.vocabularyHash, vocabularySize: i.vocabularySize,
                                                               contextLength: i.contextLength, loaded: true, fileBytes: 0)])
        }
    }

    /// Asks for the server's details and per-round costs. A server from before the extension
    /// answers `unknownType`: it is then used without them.
    private func negotiate() throws {
        serverDetails = nil
        do {
            let reply = try exchange(.capabilities(.roundCosts), what: "capabilities")
            guard case let .serverDetails(details) = reply.message else { throw unexpected(reply.message, "server details") }
            serverDetails = details
        } catch let RemoteError.server(e) where e.code == .unknownType {
            // An old server: plain `result` frames, nothing advertised.
        }
        decodeOffer = 0
        do {
            let reply = try exchange(.decodeQuery, what: "decode query")
            guard case let .decodeOffer(offer) = reply.message else { throw unexpected(reply.message, "a decode offer") }
            decodeOffer = Int(offer.maxTokens)
        } catch let RemoteError.server(e) where e.code == .unknownType {
            // A server without run-ahead rounds.
        }
    }

    /// Opens a session and reads the committed tokens into it (the prompt, or after a
    /// reconnection everything committed so far).
    private func openSession() throws {
        guard let request else { return }
        let capacity = min(request.capacity, contextLength)
        var sampling = request.sampling.wire
        if history.count > request.prompt.count {
            stats.resumedSessions += 1
            // Resuming: a fresh stream of random numbers, not a replay of the first rounds' draws
            // (which would correlate the output before and after the reconnection).
            sampling.seed = Self.mix(sampling.seed &+ UInt64(history.count))
        }
        let open = OpenSession(sampling: sampling, capacity: UInt32(max(capacity, history.count + 1)),
                               suppressedTokens: request.suppressedTokens.map { UInt32(bitPattern: $0) })
        let opened = try exchange(.openSession(open), what: "open session")
        guard case .sessionOpened = opened.message else { throw unexpected(opened.message, "session opened") }
        let tokens = history.map { UInt32(bitPattern: $0) }
        var start = 0
        let chunk = max(1, target.prefillChunk)
        // All chunks but the last need no reply; the final one is answered once the prompt is read.
        while tokens.count - start > chunk {
            let m = WireMessage.prefill(Prefill(isFinal: false, tokens: Array(tokens[start..<(start + chunk)])))
            stats.bytesSent += WireCodec.encode(m).readableBytes
            connection?.send(m)
            start += chunk
        }
        let done = try exchange(.prefill(Prefill(isFinal: true, tokens: Array(tokens[start...]))), what: "prefill")
        guard case let .prefilled(p) = done.message else { throw unexpected(done.message, "prefilled") }
        stats.serverBusyMilliseconds += Double(p.computeMilliseconds)
    }

    /// A request on its way: the connection it went out on, its reply to come, its size.
    private struct Outgoing {
        let connection: Connection
        let pending: Connection.Pending
        let bytesSent: Int
    }

    private struct Exchange {
        var message: WireMessage
        var bytesSent: Int
        var bytesReceived: Int
        /// From handing the request to the connection to the reply's arrival.
        var milliseconds: Double
        /// The server's admission frame before the reply (a queued or refused hello).
        var admission: Admission?
    }

    /// Sends one request without waiting for its reply.
    private func start(_ message: WireMessage, what: String, maxQueueWait: TimeAmount? = nil) throws -> Outgoing {
        guard let connection else { throw RemoteError.disconnected }
        let sent = WireCodec.encode(message).readableBytes
        return Outgoing(connection: connection, pending: connection.start(message, timeout: target.requestTimeout, what: what, maxQueueWait: maxQueueWait),
                        bytesSent: sent)
    }

    /// Waits for the reply to a request `start`ed; an error frame becomes `RemoteError.server`.
    private func finish(_ outgoing: Outgoing) throws -> Exchange {
        let reply = try outgoing.connection.wait(outgoing.pending)
        let ms = Double(reply.arrivedNanoseconds >= outgoing.pending.sentNanoseconds ? reply.arrivedNanoseconds - outgoing.pending.sentNanoseconds : 0) / 1e6
        stats.bytesSent += outgoing.bytesSent
        stats.bytesReceived += reply.bytes
        stats.roundTrips += 1
        stats.roundTripMilliseconds += ms
        if case let .error(e) = reply.message {
            if e.code.isFatal { close() }
            if let a = reply.admission, a.state == .full { retryAfterMilliseconds = Double(a.waitMilliseconds) }
            throw RemoteError.server(e)
        }
        return Exchange(message: reply.message, bytesSent: outgoing.bytesSent, bytesReceived: reply.bytes, milliseconds: ms, admission: reply.admission)
    }

    /// Sends one request and waits for its reply.
    private func exchange(_ message: WireMessage, what: String) throws -> Exchange {
        try finish(start(message, what: what))
    }

    /// Runs `body`; when the connection fails, reconnects with doubling back-off and runs it
    /// again, up to `reconnectAttempts` times. A server that refused for a full queue is given at
    /// least the retry-after it asked for. When the attempts run out, the error says what the
    /// server last said: busy (and for how long it was tried), shut down, or unreachable.
    private func withReconnects(_ body: () throws -> Void) throws {
        var attempt = 0
        var backoff = target.initialBackoff
        let started = DispatchTime.now().uptimeNanoseconds
        var sawShutdown = false
        while true {
            do {
                try body()
                return
            } catch let error as RemoteError where error.isTransient {
                close()
                attempt += 1
                if case let .server(e) = error, e.code == .shuttingDown { sawShutdown = true }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                guard attempt <= target.reconnectAttempts else {
                    switch error {
                    case let .server(e) where e.code == .serverBusy:
                        throw RemoteError.busy(host: target.host, port: target.port, attempts: attempt, seconds: elapsed, detail: e.message)
                    case .server(let e) where e.code == .shuttingDown:
                        throw RemoteError.serverShutDown(host: target.host, port: target.port, attempts: attempt, seconds: elapsed)
                    case .unreachable where sawShutdown, .disconnected where sawShutdown:
                        throw RemoteError.serverShutDown(host: target.host, port: target.port, attempts: attempt, seconds: elapsed)
                    default:
                        var reason = "\(error)"
                        if case let .unreachable(_, _, _, r) = error { reason = r }
                        throw RemoteError.unreachable(host: target.host, port: target.port, attempts: attempt, reason: reason)
                    }
                }
                var pause = backoff
                if let retry = retryAfterMilliseconds {
                    pause = max(pause, .milliseconds(Int64(retry)))
                    retryAfterMilliseconds = nil
                }
                Thread.sleep(forTimeInterval: Double(pause.nanoseconds) / 1e9)
                backoff = backoff * 2
                if request != nil { stats.reconnects += 1 }
            }
        }
    }

    /// SplitMix64's finaliser: a well-spread seed from a counter.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A cost figure from the server as a Double: negative or non-finite values become 0.
    static func amount(_ x: Float) -> Double { x.isFinite && x > 0 ? Double(x) : 0 }

    private func unexpected(_ m: WireMessage, _ wanted: String) -> RemoteError {
        close()
        return .protocolViolation("expected \(wanted), got \(m.type)")
    }

    /// The verify frame for `tree`: sampled nodes carry their distribution sparsely (non-zero
    /// entries only), siblings drawn from one distribution share it.
    public static func verifyFrame(_ tree: TokenTree, round: UInt32) -> WireMessage {
        var distributions: [SparseDistribution] = []
        var index: [UInt16] = []
        if tree.proposals.contains(where: { $0 != nil }) {
            var seen: [ObjectIdentifier: UInt16] = [:]
            for p in tree.proposals {
                guard let p else { index.append(Verify.deterministic); continue }
                if let k = seen[ObjectIdentifier(p)] { index.append(k); continue }
                let k = UInt16(distributions.count)
                seen[ObjectIdentifier(p)] = k
                var ids: [UInt32] = [], ps: [Float] = []
                for (t, v) in p.probabilities.enumerated() where v > 0 {
                    ids.append(UInt32(t))
                    ps.append(v)
                }
                distributions.append(SparseDistribution(tokens: ids, probabilities: ps))
                index.append(k)
            }
        }
        return .verify(Verify(round: round, tokens: tree.tokens.map { UInt32(bitPattern: $0) }, parents: tree.parents.map { Int32($0) },
                              distributions: distributions, distributionIndex: index))
    }
}
