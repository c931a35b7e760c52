import ArborWire
import Dispatch
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// A frame from the server, its size on the wire and when it arrived (uptime nanoseconds, taken
/// on the event loop, so a caller that collects it late still sees the true round trip).
struct Reply {
    var message: WireMessage
    var bytes: Int
    var arrivedNanoseconds: UInt64
    /// The server's `admission` frame, when it queued the request (a hello) or refused it with a
    /// retry-after before this reply.
    var admission: Admission?
}

/// One TCP connection to a server, used from a blocking caller: `start` sends a frame and
/// returns at once with the reply still to come; `wait` blocks (bounded) until it is there.
/// `request` is both.
final class Connection: @unchecked Sendable {
    let channel: any Channel
    private let handler: ReplyHandler

    /// A request whose reply is awaited: its future, and the timer that fails it at the deadline.
    struct Pending {
        let reply: EventLoopFuture<Reply>
        let deadline: Deadline
        /// When the frame was handed to the channel (uptime nanoseconds).
        let sentNanoseconds: UInt64

        /// Stops the deadline (the reply is no longer awaited, or has arrived).
        func cancel() { deadline.cancel() }
    }

    /// The timer that fails a request at its deadline; a queued hello moves it (event loop only,
    /// except `cancel`).
    final class Deadline: @unchecked Sendable {
        private let lock = NSLock()
        private var timer: Scheduled<Void>?
        private var cancelled = false
        func set(_ t: Scheduled<Void>) {
            lock.withLock {
                if cancelled { t.cancel() } else { timer?.cancel(); timer = t }
            }
        }
        func cancel() {
            lock.withLock {
                cancelled = true
                timer?.cancel()
            }
        }
    }

    private init(channel: any Channel, handler: ReplyHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func open(target: RemoteTarget, group: any EventLoopGroup) throws -> Connection {
        let handler = ReplyHandler()
        let tls = try target.tls.map { try ClientTLSContext.make($0, host: target.host) }
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(target.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandlers([WireFrameHandler(), handler])
                }
            }
        do {
            let channel = try bootstrap.connect(host: target.host, port: target.port).wait()
            return Connection(channel: channel, handler: handler)
        } catch {
            throw RemoteError.unreachable(host: target.host, port: target.port, attempts: 1, reason: Self.reason(error))
        }
    }

    /// Why a connect failed, in a few words ("Connection refused", "connect timeout", …).
    static func reason(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError {
            if let io = e.connectionErrors.lazy.compactMap({ $0.error as? IOError }).first {
                return String(cString: strerror(io.errnoCode))
            }
            if let first = e.connectionErrors.first { return "\(first.error)" }
            if let dns = e.dnsAError ?? e.dnsAAAAError { return "cannot resolve the host name (\(dns))" }
        }
        if let e = error as? ChannelError, case .connectTimeout = e { return "no answer within the connect timeout" }
        return "\(error)"
    }

    /// Sends `message` and returns without waiting: the next frame from the server will complete
    /// the returned request, or `timeout` after now it fails with `RemoteError.timedOut`.
    ///
    /// If the server queues the request (an `admission` frame, in answer to hello), the deadline
    /// moves to the server's own queue deadline plus `timeout`: the client never gives up before
    /// the server would have let it in. `maxQueueWait` caps that when the caller has a shorter
    /// patience of its own.
    func start(_ message: WireMessage, timeout: TimeAmount, what: String, maxQueueWait: TimeAmount? = nil) -> Pending {
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        let handler = self.handler, channel = self.channel
        let sent = DispatchTime.now().uptimeNanoseconds
        let deadline = Deadline()
        let eventLoop = channel.eventLoop
        // The first deadline is set before the frame can go out, so a queued answer (which moves
        // it) always comes after it.
        deadline.set(eventLoop.scheduleTask(in: timeout) {
            promise.fail(RemoteError.timedOut(what: what, seconds: Double(timeout.nanoseconds) / 1e9))
        })
        eventLoop.execute {
            handler.expect(promise) { admission in
                guard admission.state == .queued else { return }
                var wait = TimeAmount.milliseconds(Int64(admission.deadlineMilliseconds)) + timeout
                if let maxQueueWait { wait = min(wait, maxQueueWait) }
                deadline.set(eventLoop.scheduleTask(in: wait) {
                    promise.fail(RemoteError.timedOut(what: "\(what) (queued for a session slot at place \(admission.position))",
                                                      seconds: Double(wait.nanoseconds) / 1e9))
                })
            }
            channel.writeAndFlush(message).whenFailure { promise.fail($0) }
        }
        return Pending(reply: promise.futureResult, deadline: deadline, sentNanoseconds: sent)
    }

    /// Waits for the reply to a request `start`ed on this connection (bounded by its timeout).
    func wait(_ pending: Pending) throws -> Reply {
        defer { pending.cancel() }
        do {
            return try pending.reply.wait()
        } catch let e as RemoteError {
            throw e
        } catch let e as ErrorFrame {
            throw RemoteError.server(e)
        } catch {
            throw RemoteError.disconnected
        }
    }

    /// Sends `message` and waits for the next frame from the server.
    func request(_ message: WireMessage, timeout: TimeAmount, what: String) throws -> Reply {
        try wait(start(message, timeout: timeout, what: what))
    }

    /// Sends without waiting for a reply.
    func send(_ message: WireMessage) {
        channel.writeAndFlush(message, promise: nil)
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Hands each frame from the server to the waiting request; fails it when the connection ends.
final class ReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WireInbound

    /// Event loop only.
    private var waiting: EventLoopPromise<Reply>?
    private var onAdmission: ((Admission) -> Void)?
    private var admission: Admission?
    private var closedError: (any Error)?

    func expect(_ promise: EventLoopPromise<Reply>, onAdmission: @escaping (Admission) -> Void = { _ in }) {
        if let closedError {
            promise.fail(closedError)
            return
        }
        waiting?.fail(RemoteError.protocolViolation("a second request while one is in flight"))
        waiting = promise
        self.onAdmission = onAdmission
        admission = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames of types this client does not know are dropped (a newer server's extensions).
        guard case let .message(message, bytes) = unwrapInboundIn(data) else { return }
        if case let .admission(a) = message {
            // Not the reply: the server says where the request stands (queued, or full).
            admission = a
            onAdmission?(a)
            return
        }
        if let w = waiting {
            waiting = nil
            onAdmission = nil
            w.succeed(Reply(message: message, bytes: bytes, arrivedNanoseconds: DispatchTime.now().uptimeNanoseconds, admission: admission))
            admission = nil
        } else if case let .error(e) = message, e.code.isFatal {
            // A fatal error nobody asked for (shutdown, idle timeout): the connection is ending,
            // so the next request fails with it rather than with a bare disconnect.
            closedError = RemoteError.server(e)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let e: any Error = (error as? ErrorFrame).map { RemoteError.server($0) } ?? ClientTLSContext.explain(error) ?? RemoteError.disconnected
        closedError = closedError ?? e
        waiting?.fail(e)
        waiting = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closedError = closedError ?? RemoteError.disconnected
        waiting?.fail(closedError!)
        waiting = nil
        context.fireChannelInactive()
    }
}

/// The client's TLS context and the name it checks the server's certificate against.
struct ClientTLSContext {
    let context: NIOSSLContext
    /// SNI and the certificate's expected name; nil when the host is an address (the certificate
    /// must then list that address).
    let serverName: String?

    static func make(_ tls: ClientTLS, host: String) throws -> ClientTLSContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let ca = tls.caPath {
            guard FileManager.default.isReadableFile(atPath: ca) else {
                throw RemoteError.tls("the CA file \(ca) does not exist or is not readable")
            }
            do {
                let roots = try NIOSSLCertificate.fromPEMFile(ca)
                guard !roots.isEmpty else { throw RemoteError.tls("the CA file \(ca) holds no PEM certificate") }
                configuration.trustRoots = .certificates(roots)
            } catch let e as RemoteError {
                throw e
            } catch {
                throw RemoteError.tls("the CA file \(ca) holds no PEM certificate (\(error))")
            }
        }
        let name = tls.serverName ?? host
        // An address is not a name: no SNI, and NIOSSL checks the certificate against the peer's IP.
        let isAddress = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        do {
            return ClientTLSContext(context: try NIOSSLContext(configuration: configuration), serverName: isAddress ? nil : name)
        } catch {
            throw RemoteError.tls("cannot set up TLS: \(error)")
        }
    }

    /// A TLS failure as a clear, non-transient error (nil: not a TLS error).
    static func explain(_ error: any Error) -> RemoteError? {
        if let e = error as? NIOSSLExtraError {
            let text = "\(e)"
            if text.contains("failedToValidateHostname") || text.contains("hostname") {
                return .tls("the server's certificate is not valid for this host name or address (\(text))")
            }
            return .tls("\(text)")
        }
        if let e = error as? NIOSSLError {
            let text = "\(e)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
                return .tls("the server's certificate is not signed by a trusted CA (check --tls-ca): \(text)")
            }
            if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") || text.contains("RECORD_TOO_LARGE") || text.contains("HTTP_REQUEST") {
                return .tls("the server did not answer with TLS (is it running without --tls-cert?): \(text)")
            }
            return .tls("TLS handshake failed: \(text)")
        }
        if error is BoringSSLError { return .tls("TLS failed: \(error)") }
        return nil
    }
}
