import ArborHost
import ArborWire
import Foundation
import NIOCore
import NIOSSL

/// Counts the protocol's bytes in and out (after TLS: the frames' own bytes, what clients count).
final class ByteCounter: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let metrics: ServerMetrics
    init(metrics: ServerMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        metrics.bytes(received: unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        metrics.bytes(sent: unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }
}

/// First handler of a TLS server's connection: a TLS client's first byte is a handshake record
/// (0x16); anything else is a plain client, which gets a plain `tlsRequired` error it can read
/// (rather than a TLS alert it cannot) and is closed. On TLS, the TLS handler takes its place.
final class TLSSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let sslContext: NIOSSLContext
    private let metrics: ServerMetrics
    init(context: NIOSSLContext, metrics: ServerMetrics) {
        sslContext = context
        self.metrics = metrics
    }

    /// The first byte of a TLS record carrying a handshake message.
    static let handshakeRecord: UInt8 = 0x16

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        guard first == Self.handshakeRecord else {
            let channel = context.channel
            let error = ErrorFrame(code: .tlsRequired, message: "this server accepts TLS connections only (connect with --tls)")
            metrics.errorSent(error.code.metricName)
            context.writeAndFlush(wrapOutboundOut(WireCodec.encode(.error(error), allocator: channel.allocator))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext), position: .after(self))
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Builds the server's TLS context from PEM files, with clear errors.
enum ServerTLSContext {
    static func make(_ files: ServerTLS) throws -> NIOSSLContext {
        for (what, path) in [("certificate", files.certificatePath), ("key", files.keyPath)] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw TLSSetupError(message: "TLS \(what) file \(path) does not exist or is not readable")
            }
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificatePath)
        } catch {
            throw TLSSetupError(message: "TLS certificate file \(files.certificatePath) holds no PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw TLSSetupError(message: "TLS certificate file \(files.certificatePath) holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.keyPath, format: .pem)
        } catch {
            throw TLSSetupError(message: "TLS key file \(files.keyPath) holds no PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(message: "TLS certificate \(files.certificatePath) and key \(files.keyPath) cannot be used together (\(error))")
        }
    }
}

/// A TLS setting that cannot be used, in one line.
public struct TLSSetupError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
