import ArborWire
import NIOCore
import NIOPosix

/// One TCP connection to a server, used from a blocking caller: `request` sends a frame and
/// waits (bounded) for the next one.
final class Connection: @unchecked Sendable {
    let channel: any Channel
    private let handler: ReplyHandler

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

    /// Sends `message` and returns the next frame from the server with its size.
    func request(_ message: WireMessage, timeout: TimeAmount, what: String) throws -> (WireMessage, Int) {
        let promise = channel.eventLoop.makePromise(of: (WireMessage, Int).self)
        let handler = self.handler, channel = self.channel
        channel.eventLoop.execute {
            handler.expect(promise)
            channel.writeAndFlush(message).whenFailure { promise.fail($0) }
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(RemoteError.timedOut(what: what, seconds: Double(timeout.nanoseconds) / 1e9))
        }
        defer { timer.cancel() }
        do {
            return try promise.futureResult.wait()
        } catch let e as RemoteError {
            throw e
        } catch let e as ErrorFrame {
            throw RemoteError.server(e)
        } catch {
            throw RemoteError.disconnected
        }
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
    private var waiting: EventLoopPromise<(WireMessage, Int)>?
    private var closedError: (any Error)?

    func expect(_ promise: EventLoopPromise<(WireMessage, Int)>) {
        if let closedError {
            promise.fail(closedError)
            return
        }
        waiting?.fail(RemoteError.protocolViolation("a second request while one is in flight"))
        waiting = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case let .message(message, bytes) = unwrapInboundIn(data) else { return }
        if let w = waiting {
            waiting = nil
            w.succeed((message, bytes))
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
