import ArborEngine
import ArborHost
import ArborWire
import Logging
import NIOCore

/// Tells every connection that the server is shutting down.
struct ShutdownEvent: Sendable {}
/// A queued connection now holds a session slot.
struct AdmittedEvent: Sendable { let waitedMilliseconds: Double }
/// A queued connection waited its longest without a slot.
struct QueueExpiredEvent: Sendable {
    let waitedMilliseconds: Double
    let retryAfterMilliseconds: Double
}
/// A connection still in its handshake is closed to make room for a new one.
struct EvictedEvent: Sendable {}

/// One client connection on the server: feeds frames to the `ConnectionStateMachine` and
/// carries out its actions — replies on the event loop, model work on the `TargetHost` thread,
/// results back on the event loop.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WireInbound
    typealias OutboundOut = WireMessage

    private var machine: ConnectionStateMachine
    private let server: ServerContext
    private var logger: Logger
    private var session: ServerSession?
    /// The connection's id in the server's admission bookkeeping.
    private let id: UInt64
    private var handshakeTimer: Scheduled<Void>?
    private var draining = false

    init(server: ServerContext, id: UInt64, logger: Logger) {
        self.server = server
        self.id = id
        self.logger = logger
        self.machine = ConnectionStateMachine(validator: server.validator, authToken: server.configuration.authToken, details: server.details,
                                              maxDecodeTokens: server.configuration.maxDecodeTokens, models: server.models)
    }

    func channelActive(context: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(context.remoteAddress.map { "\($0)" } ?? "?")"
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let seconds = Double(server.configuration.handshakeTimeout.nanoseconds) / 1e9
        handshakeTimer = context.eventLoop.scheduleTask(in: server.configuration.handshakeTimeout) {
            let (handler, context) = loopBound.value
            handler.server.metrics.refused("handshake_timeout")
            handler.perform(handler.machine.refuse(ErrorFrame(code: .timeout, message: "no hello accepted within the handshake timeout (\(seconds) s)")), context: context)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .message(message, _):
            perform(machine.receive(message), context: context)
        case let .skipped(error, _):
            logger.debug("skipped frame", metadata: ["error": "\(error)"])
            send(.error(error), context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        endSession()
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors were already answered by the frame handler, which closes the channel.
        logger.info("connection error", metadata: ["error": "\(error)"])
        if let e = error as? ErrorFrame {
            server.metrics.errorSent(e.code.metricName)
        } else {
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            draining = true
            if machine.phase != .waiting { refuseForShutdown(context: context) }
        } else if let admitted = event as? AdmittedEvent {
            guard machine.phase == .queued else { return }
            machine.admitted()
            logger.info("admitted from the queue", metadata: ["waited_ms": "\(Int(admitted.waitedMilliseconds))"])
            send(.serverInfo(server.serverInfo), context: context)
        } else if let expired = event as? QueueExpiredEvent {
            guard machine.phase == .queued else { return }
            let retry = Int((expired.retryAfterMilliseconds / 1000).rounded(.up))
            perform(machine.refuse(ErrorFrame(code: .serverBusy, message: "waited \(Int(expired.waitedMilliseconds / 1000)) s in the queue without a free session slot; retry after \(retry) s")), context: context)
        } else if event is EvictedEvent {
            perform(machine.refuse(ErrorFrame(code: .serverBusy, message: "closed to make room: the handshake was not completed and the server is at its connection limit")), context: context)
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, machine.phase != .waiting, machine.phase != .queued {
            // Idle while the server works on its request, or while it is queued, is not the
            // client's fault.
            perform(machine.refuse(ErrorFrame(code: .timeout, message: "no frame from the client within the idle timeout")), context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func refuseForShutdown(context: ChannelHandlerContext) {
        perform(machine.refuse(ErrorFrame(code: .shuttingDown, message: "the server is shutting down")), context: context)
    }

    private func perform(_ action: ConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case let .send(message):
            send(message, context: context)
        case let .fail(error):
            logger.info("closing connection", metadata: ["error": "\(error)"])
            handshakeTimer?.cancel()
            endSession()
            let channel = context.channel
            server.metrics.errorSent(error.code.metricName)
            context.writeAndFlush(wrapOutboundOut(.error(error))).whenComplete { _ in channel.close(promise: nil) }
        case let .acceptHello(clientName):
            handshakeTimer?.cancel()
            logger[metadataKey: "client"] = "\(clientName)"
            switch server.hello(id) {
            case .admit:
                logger.debug("hello")
                send(.serverInfo(server.serverInfo), context: context)
            case let .queue(admission):
                machine.queued()
                logger.info("queued for a session slot", metadata: ["position": "\(admission.position)", "estimated_wait_ms": "\(admission.waitMilliseconds)"])
                send(.admission(admission), context: context)
            case let .refuse(admission, error):
                send(.admission(admission), context: context)
                perform(machine.refuse(error), context: context)
            }
        case .listModels:
            send(.modelList(server.modelList(selected: machine.selected)), context: context)
        case let .openSession(setup):
            endSession()
            if let why = server.admit(model: machine.selected) {
                for a in machine.workFailed(why, round: 0) { perform(a, context: context) }
                return
            }
            let s = ServerSession(id: server.nextSessionID(), setup: setup, metrics: server.host.metrics, host: server.hosts[machine.selected],
                                  drafting: machine.selected == 0 ? server.configuration.decodeDrafting : nil)
            s.host.sessionOpened()
            session = s
            server.host.metrics.sessionOpened(tokens: setup.capacity)
            logger[metadataKey: "session"] = "\(s.id)"
            logger.info("session opened", metadata: ["capacity": "\(setup.capacity)", "model": "\(server.models[machine.selected].info.modelName)"])
            send(.sessionOpened(SessionOpened(sessionID: s.id, capacity: UInt32(setup.capacity))), context: context)
        case let .prefill(prompt):
            guard let s = session else { return }
            let reply = replyLater(s, round: 0, context: context)
            let meter = s.host.meter
            s.host.submit { model, _ in
                reply(model.flatMap { m in
                    Result {
                        let ms = try s.prefill(prompt, model: m, meter: meter)
                        s.metrics.busy(milliseconds: ms)
                        return { handler in handler.machine.prefillCompleted(count: prompt.count, milliseconds: ms) }
                    }
                })
            }
        case let .verify(tree, round):
            guard let s = session else { return }
            let reply = replyLater(s, round: round, context: context)
            s.host.submitVerify(s, tree) { outcome, queueMs in
                if case let .success(r) = outcome { s.metrics.roundServed(milliseconds: r.targetMilliseconds + r.samplingMilliseconds); s.countRound() }
                reply(outcome.map { r in { handler in handler.machine.verifyCompleted(r, round: round, queueMilliseconds: queueMs) } })
            }
        case let .decode(count, round):
            guard let s = session else { return }
            decode(s, count: count, round: round, reply: replyLater(s, round: round, context: context))
        case .endSession:
            endSession()
        }
    }

    /// A run-ahead round: `count` plain target passes, each queued behind the other sessions'
    /// work (so a long run cannot starve them), stopping early after an end-of-generation token.
    private func decode(_ s: ServerSession, count: Int, round: UInt32,
                        reply: @escaping @Sendable (Result<@Sendable (ConnectionHandler) -> WireMessage, any Error>) -> Void) {
        let host = s.host
        let run = DecodeRun(count: count, stops: host.info.endOfGeneration.subtracting(s.setup.suppressedTokens))
        if s.drafting != nil {
            speculativeDecode(s, run: run, round: round, reply: reply)
            return
        }
        func pass() {
            host.submitVerify(s, TokenTree()) { outcome, queueMs in
                switch outcome {
                case let .failure(error):
                    reply(.failure(error))
                case let .success(r):
                    s.metrics.busy(milliseconds: r.targetMilliseconds + r.samplingMilliseconds)
                    _ = run.take([r.nextToken])
                    run.add(r.cost, queueMilliseconds: queueMs)
                    if run.isDone || s.isCancelled { Self.finish(run, s, round: round, reply: reply) } else { pass() }
                }
            }
        }
        pass()
    }

    /// A run-ahead round with server-side speculation: speculative rounds on the session's
    /// verifier (each queued behind the other sessions' work) until `count` tokens, or an
    /// end-of-generation token, which ends the reply (tokens a round accepted past it are
    /// dropped from the session, as if plain passes had stopped there).
    private func speculativeDecode(_ s: ServerSession, run: DecodeRun, round: UInt32,
                                   reply: @escaping @Sendable (Result<@Sendable (ConnectionHandler) -> WireMessage, any Error>) -> Void) {
        let host = s.host
        let meter = host.meter
        func step() {
            host.submit { model, queueMs in
                do {
                    _ = try model.get()
                    let r = try s.speculate(remaining: run.count - run.tokens.count, meter: meter)
                    // The drafter's time is the server's: billed with the target's.
                    s.metrics.busy(milliseconds: r.result.cost.serverMilliseconds + r.draft.milliseconds)
                    s.metrics.pass(rounds: 1, tokens: r.result.batchSize)
                    s.metrics.speculated(drafted: r.result.batchSize - 1, accepted: r.result.acceptedNodes.count, draftMilliseconds: r.draft.milliseconds)
                    // The session's state stays exactly at the tokens sent.
                    s.discardLast(r.tokens.count - run.take(r.tokens))
                    run.add(r.result.cost, draft: r.draft, queueMilliseconds: queueMs)
                    if run.isDone || s.isCancelled { Self.finish(run, s, round: round, reply: reply) } else { step() }
                } catch {
                    reply(.failure(error))
                }
            }
        }
        step()
    }

    /// Answers a `decode`: one round (as the client counts it), however many passes.
    private static func finish(_ run: DecodeRun, _ s: ServerSession, round: UInt32,
                               reply: @Sendable (Result<@Sendable (ConnectionHandler) -> WireMessage, any Error>) -> Void) {
        s.metrics.roundServed(milliseconds: 0)
        s.countRound()
        let tokens = run.tokens, cost = run.cost
        reply(.success { handler in handler.machine.decodeCompleted(tokens, cost: cost, round: round) })
    }

    /// What model work calls (on the model thread) with its outcome: frees the session's cache if
    /// the client left meanwhile, then hands the reply to the event loop.
    private func replyLater(_ s: ServerSession, round: UInt32, context: ChannelHandlerContext)
        -> @Sendable (Result<@Sendable (ConnectionHandler) -> WireMessage, any Error>) -> Void {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        return { outcome in
            if s.isCancelled { s.release() }
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.complete(s, outcome, round: round, context: context)
            }
        }
    }

    /// Sends the reply of finished model work (event loop), if the session is still this
    /// connection's; a failure ends the session with an error frame.
    private func complete(_ s: ServerSession, _ outcome: Result<@Sendable (ConnectionHandler) -> WireMessage, any Error>,
                          round: UInt32, context: ChannelHandlerContext) {
        guard session === s else { return }  // Closed or replaced meanwhile.
        switch outcome {
        case let .success(reply):
            send(reply(self), context: context)
        case let .failure(error):
            logger.warning("model work failed", metadata: ["error": "\(error)"])
            for a in machine.workFailed("\(error)", round: round) { perform(a, context: context) }
        }
        if draining { refuseForShutdown(context: context) }
    }

    /// Writes one frame (error frames counted by code for the metrics).
    private func send(_ message: WireMessage, context: ChannelHandlerContext) {
        if case let .error(e) = message { server.metrics.errorSent(e.code.metricName) }
        context.writeAndFlush(wrapOutboundOut(message), promise: nil)
    }

    /// Cancels queued work and frees the session's cache on the model thread.
    private func endSession() {
        guard let s = session else { return }
        session = nil
        logger.info("session closed", metadata: ["rounds": "\(s.rounds)"])
        logger[metadataKey: "session"] = nil
        s.cancel()
        server.host.metrics.sessionClosed(tokens: s.setup.capacity)
        s.host.sessionClosed()
        s.host.submit { _, _ in s.release() }
    }
}

extension WireErrorCode {
    /// The code's name as a metrics label: "server_busy", "tls_required", …
    var metricName: String { description.lowercased().replacingOccurrences(of: " ", with: "_") }
}

/// One run-ahead round's tokens and costs so far (touched on the model thread only, one pass
/// after another).
private final class DecodeRun: @unchecked Sendable {
    let count: Int
    /// End-of-generation tokens the session did not suppress: the run ends after one.
    let stops: Set<Int32>
    private(set) var tokens: [Int32] = []
    private(set) var cost = RoundCost()
    private var stopped = false

    init(count: Int, stops: Set<Int32>) {
        self.count = count
        self.stops = stops
    }

    var isDone: Bool { stopped || tokens.count >= count }

    /// Appends `committed` up to the count or a stop token; returns how many it took.
    func take(_ committed: [Int32]) -> Int {
        var taken = 0
        for t in committed where !isDone {
            tokens.append(t)
            taken += 1
            if stops.contains(t) { stopped = true }
        }
        return taken
    }

    /// Adds a pass's costs (and the drafting before it, billed as the server's time).
    func add(_ c: RoundCost, draft: DraftCost = DraftCost(), queueMilliseconds: Double) {
        cost.targetMilliseconds += c.targetMilliseconds + draft.milliseconds
        cost.samplingMilliseconds += c.samplingMilliseconds
        cost.targetCPUMilliseconds += c.targetCPUMilliseconds + draft.cpuMilliseconds
        cost.targetJoules += c.targetJoules + draft.joules
        cost.targetEnergySource = c.targetEnergySource
        cost.queueMilliseconds += queueMilliseconds
    }
}
