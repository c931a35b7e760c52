import NIOCore

/// Frames over a NIO channel: bytes in → `WireInbound`, `WireMessage` out → bytes.
///
/// Used by both the server and the client. A fatal framing error (see `WireFrameReader`) is
/// answered with an error frame, then the channel is closed; the error is also passed on through
/// `errorCaught` so the next handler can log it and release what the connection held. With a
/// `frameTimeout`, a frame whose first byte arrived but whose last did not within that time is
/// a fatal `.timeout` — a peer trickling bytes (slowloris) cannot hold the connection forever.
public final class WireFrameHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = WireInbound
    public typealias OutboundIn = WireMessage
    public typealias OutboundOut = ByteBuffer

    private let reader: WireFrameReader
    private let frameTimeout: TimeAmount?
    private var buffer: ByteBuffer?
    private var partialTimer: Scheduled<Void>?
    private var failed = false

    public init(limits: WireLimits = WireLimits(), frameTimeout: TimeAmount? = nil) {
        self.reader = WireFrameReader(limits: limits)
        self.frameTimeout = frameTimeout
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        var completed = false
        do {
            while var current = buffer, let frame = try reader.next(from: &current) {
                buffer = current
                completed = true
                context.fireChannelRead(wrapInboundOut(frame))
                if failed { return }
            }
        } catch {
            fail(context: context, error)
            return
        }
        if let b = buffer, b.readableBytes == 0 {
            buffer = nil
        } else if buffer!.readerIndex > 1 << 16 {
            buffer!.discardReadBytes()
        }
        armPartialTimer(context: context, restart: completed)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var out = context.channel.allocator.buffer(capacity: 64)
        WireCodec.encode(unwrapOutboundIn(data), into: &out)
        context.write(wrapOutboundOut(out), promise: promise)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        partialTimer?.cancel()
        partialTimer = nil
        context.fireChannelInactive()
    }

    /// Starts (or restarts, when a frame just completed) the deadline for the incomplete frame.
    private func armPartialTimer(context: ChannelHandlerContext, restart: Bool) {
        guard let frameTimeout else { return }
        let partial = buffer.map { $0.readableBytes > 0 } ?? false
        if !partial || restart {
            partialTimer?.cancel()
            partialTimer = nil
        }
        guard partial, partialTimer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        partialTimer = context.eventLoop.scheduleTask(in: frameTimeout) {
            let (handler, context) = loopBound.value
            handler.partialTimer = nil
            handler.fail(context: context, ErrorFrame(
                code: .timeout, message: "a frame did not complete within \(frameTimeout.nanoseconds / 1_000_000) ms"))
        }
    }

    /// Answers a fatal error with an error frame and closes the channel.
    private func fail(context: ChannelHandlerContext, _ error: ErrorFrame) {
        guard !failed else { return }
        failed = true
        buffer = nil
        partialTimer?.cancel()
        partialTimer = nil
        context.fireErrorCaught(error)
        var out = context.channel.allocator.buffer(capacity: 64)
        WireCodec.encode(.error(error), into: &out)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
