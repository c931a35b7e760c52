import ArborWire
import Dispatch
import NIOCore
import NIOPosix

/// A frame from the server, its size on the wire and when it arrived (uptime nanoseconds, taken
/// on the event loop, so a caller that collects it late still sees the true round trip).
struct Reply {
    var message: WireMessage
    var bytes: Int
    var arrivedNanoseconds: UInt64
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
        let timer: Scheduled<Void>
        /// When the frame was handed to the channel (uptime nanoseconds).
        let sentNanoseconds: UInt64

        /// Stops the deadline (the reply is no longer awaited, or has arrived).
        func cancel() { timer.cancel() }
    }

    private init(channel: any Channel, handler: ReplyHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func open(target: RemoteTarget, group: any EventLoopGroup) throws -> Connection {
        let handler = ReplyHandler()
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(target.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([WireFrameHandler(), handler])
                }
            }
        do {
            let channel = try bootstrap.connect(host: target.host, port: target.port).wait()
            return Connection(channel: channel, handler: handler)
        } catch {
            throw RemoteError.unreachable(host: target.host, port: target.port, attempts: 1, reason: "\(error)")
        }
    }

    /// Sends `message` and returns without waiting: the next frame from the server will complete
    /// the returned request, or `timeout` after now it fails with `RemoteError.timedOut`.
    func start(_ message: WireMessage, timeout: TimeAmount, what: String) -> Pending {
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        let handler = self.handler, channel = self.channel
        let sent = DispatchTime.now().uptimeNanoseconds
        channel.eventLoop.execute {
            handler.expect(promise)
            channel.writeAndFlush(message).whenFailure { promise.fail($0) }
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(RemoteError.timedOut(what: what, seconds: Double(timeout.nanoseconds) / 1e9))
        }
        return Pending(reply: promise.futureResult, timer: timer, sentNanoseconds: sent)
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
    private var closedError: (any Error)?

    func expect(_ promise: EventLoopPromise<Reply>) {
        if let closedError {
            promise.fail(closedError)
            return
        }
        waiting?.fail(RemoteError.protocolViolation("a second request while one is in flight"))
        waiting = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames of types this client does not know are dropped (a newer server's extensions).
        guard case let .message(message, bytes) = unwrapInboundIn(data) else { return }
        if let w = waiting {
            waiting = nil
            w.succeed(Reply(message: message, bytes: bytes, arrivedNanoseconds: DispatchTime.now().uptimeNanoseconds))
        } else if case let .error(e) = message, e.code.isFatal {
            // A fatal error nobody asked for (shutdown, idle timeout): the connection is ending,
            // so the next request fails with it rather than with a bare disconnect.
            closedError = RemoteError.server(e)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let e: any Error = (error as? ErrorFrame).map { RemoteError.server($0) } ?? RemoteError.disconnected
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
