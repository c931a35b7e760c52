import ArborEngine
import ArborHost
import ArborWire
import Foundation
import Logging
import NIOCore
import NIOPosix

/// What every connection handler shares: configuration, the targets, the session slots.
final class ServerContext: @unchecked Sendable {
    let configuration: ServerConfiguration
    /// The target models; the first is the one hello answers with.
    let hosts: [TargetHost]
    let models: [ModelChoice]
    /// The answer to `capabilities`; nil when the cost extension is off.
    let details: ServerDetails?
    private let lock = NSLock()
    private var slots = 0
    private var sessionCounter: UInt32 = 0
    /// When each host last opened a session (for least-recently-used unloading).
    private var lastUsed: [UInt64]

    init(configuration: ServerConfiguration, hosts: [TargetHost], details: ServerDetails?) {
        self.configuration = configuration
        self.hosts = hosts
        self.details = details
        let names = [configuration.modelName] + configuration.extraModels.map(\.name)
        models = zip(names, hosts).map { name, host in
            let info = host.info
            let sessionTokens = min(configuration.maxSessionTokens, info.contextLength)
            let validator = RequestValidator(vocabularySize: info.vocabularySize, contextLength: info.contextLength,
                                             maxTreeNodes: min(configuration.maxTreeNodes, Int(UInt16.max) - 1),
                                             maxSessionTokens: sessionTokens)
            return ModelChoice(
                info: ServerInfo(
                    serverName: configuration.serverName, modelName: name, vocabularyHash: info.vocabularyHash,
                    vocabularySize: UInt32(info.vocabularySize), contextLength: UInt32(info.contextLength),
                    maxTreeNodes: UInt32(validator.maxTreeNodes), maxSessionTokens: UInt32(sessionTokens),
                    maxFrameBytes: UInt32(configuration.maxFrameBytes)),
                validator: validator)
        }
        lastUsed = Array(repeating: 0, count: hosts.count)
    }

    var host: TargetHost { hosts[0] }
    var validator: RequestValidator { models[0].validator }
    var serverInfo: ServerInfo { models[0].info }

    /// The models and which are loaded, for `modelList`.
    func modelList(selected: Int) -> ModelList {
        ModelList(selected: UInt16(selected), models: zip(models, hosts).map { m, h in
            ServedModel(name: m.info.modelName, vocabularyHash: m.info.vocabularyHash, vocabularySize: m.info.vocabularySize,
                        contextLength: m.info.contextLength, loaded: h.isLoaded, fileBytes: h.fileBytes)
        })
    }

    /// Makes room for model `index` within the memory budget, unloading unused models least
    /// recently used first; nil when it fits (or is loaded), else why it cannot.
    func admit(model index: Int) -> String? {
        lock.withLock { lastUsed[index] = DispatchTime.now().uptimeNanoseconds }
        let budget = configuration.modelMemoryBudget
        guard budget > 0, !hosts[index].isLoaded else { return nil }
        let need = hosts[index].fileBytes
        var loaded = hosts.indices.filter { $0 != index && hosts[$0].isLoaded }
        var used = loaded.reduce(UInt64(0)) { $0 + hosts[$1].fileBytes }
        guard need <= budget else {
            return "model \(models[index].info.modelName) (\(need >> 20) MiB) is larger than the server's model memory budget (\(budget >> 20) MiB)"
        }
        let order = lock.withLock { loaded.sorted { lastUsed[$0] < lastUsed[$1] } }
        loaded = order
        for i in loaded where used + need > budget {
            if hosts[i].unloadIfUnused() { used -= hosts[i].fileBytes }
        }
        guard used + need <= budget else {
            let busy = loaded.filter { hosts[$0].isLoaded }.map { models[$0].info.modelName }
            return "model \(models[index].info.modelName) cannot be loaded within the model memory budget (\(budget >> 20) MiB): \(busy.joined(separator: ", ")) are in use"
        }
        return nil
    }

    /// Unloads models no session has used for `timeout`.
    func unloadIdle(after timeout: Double) {
        for h in hosts {
            let u = h.usage
            if u.loaded, u.sessions == 0, u.idleSeconds >= timeout { h.unloadIfUnused() }
        }
    }

    /// Takes a session slot if one is free.
    func acquireSlot() -> Bool {
        lock.withLock {
            guard slots < configuration.maxSessions else { return false }
            slots += 1
            return true
        }
    }

    func releaseSlot() { lock.withLock { slots -= 1 } }

    func nextSessionID() -> UInt32 {
        lock.withLock {
            sessionCounter &+= 1
            return sessionCounter
        }
    }
}

/// Answers a connection the server cannot take with one error frame, then closes it.
final class RefuseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let error: ErrorFrame
    init(_ error: ErrorFrame) { self.error = error }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(NIOAny(WireCodec.encode(.error(error), allocator: channel.allocator))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// `arbor serve`: the target model behind Arbor's verification protocol (docs/PROTOCOL.md).
///
/// One event loop thread handles every socket (framing, validation, replies); the model runs on
/// its own thread (`TargetHost`), one round at a time in arrival order. Each client connection
/// holds at most one session with its own KV cache; closing the connection frees it.
public final class VerificationServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// The first target model's host (the one hello answers with).
    public let host: TargetHost
    /// Every target model's host, the first model first.
    public let hosts: [TargetHost]
    private let context: ServerContext
    private var idleTimer: RepeatedTask?
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private var channel: (any Channel)?
    private let lock = NSLock()
    private var connections: [ObjectIdentifier: any Channel] = [:]
    private var stopped = false
    private let finished = DispatchGroup()

    /// Loads the target (unless lazy), profiles it if asked, and prepares the server; `start()`
    /// binds the socket.
    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "arbor.serve")) throws {
        self.configuration = configuration
        self.logger = logger
        host = try TargetHost(path: configuration.modelPath, threads: configuration.threads,
                              lazy: configuration.lazyLoad && !configuration.profileTarget,
                              maxBatchTokens: configuration.maxBatchTokens, wattsPerCore: configuration.wattsPerCore)
        // More models: read their metadata now (a bad file fails at start-up), load on first use.
        var extras: [TargetHost] = []
        do {
            for m in configuration.extraModels {
                extras.append(try TargetHost(path: m.path, threads: configuration.threads, lazy: true, maxBatchTokens: configuration.maxBatchTokens,
                                             wattsPerCore: configuration.wattsPerCore, metrics: host.metrics))
            }
        } catch {
            host.stop()
            extras.forEach { $0.stop() }
            throw error
        }
        hosts = [host] + extras
        var profile: [TargetTiming] = []
        if configuration.profileTarget {
            do {
                let treeLimit = min(configuration.maxTreeNodes, Int(UInt16.max) - 1)
                let sizes = Self.profileBatchSizes.filter { $0 <= treeLimit + 1 }
                let timings = try host.profile(batchSizes: sizes)
                profile = timings.map { TargetTiming(batchSize: UInt16($0.batchSize), milliseconds: Float($0.milliseconds)) }
                logger.info("target profile (median of 3 passes per batch size)", metadata: [
                    "model": "\(configuration.modelName)",
                    "profile": "\(timings.map { "\($0.batchSize): \(String(format: "%.2f", $0.milliseconds)) ms" }.joined(separator: ", "))",
                ])
            } catch {
                host.stop()
                throw error
            }
        }
        let meter = host.meter
        details = configuration.costExtension
            ? ServerDetails(pricePerHour: configuration.pricePerHour.map { Float($0) }, energySource: WireEnergySource(meter.source),
                            wattsPerCore: meter.source == .measured ? 0 : Float(meter.wattsPerCore), targetProfile: profile)
            : nil
        context = ServerContext(configuration: configuration, hosts: hosts, details: details)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Batch sizes timed by `ServerConfiguration.profileTarget` (those up to `maxTreeNodes + 1`).
    public static let profileBatchSizes = [1, 2, 4, 8, 16, 32, 64]

    /// What the server advertises in `serverDetails` (price, energy source, target profile);
    /// nil when `ServerConfiguration.costExtension` is off.
    public let details: ServerDetails?

    /// Server-wide counters.
    public var metrics: ServerMetrics { host.metrics }

    /// The port the server listens on (useful with port 0); set by `start()`.
    public private(set) var port: Int?

    /// Binds and starts accepting connections.
    public func start() throws {
        let context = self.context
        let configuration = self.configuration
        let logger = self.logger
        let limits = WireLimits(maxFrameBytes: configuration.maxFrameBytes)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                if let refusal = self.register(channel) {
                    // Over the connection limit or shutting down: say so and hang up, reading nothing.
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RefuseHandler(refusal))
                    }
                }
                channel.closeFuture.whenComplete { _ in self.unregister(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.idleTimeout),
                        WireFrameHandler(limits: limits, frameTimeout: configuration.frameTimeout),
                        ConnectionHandler(server: context, logger: logger),
                    ])
                }
            }
        do {
            let bound = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
            channel = bound
            port = bound.localAddress?.port
        } catch {
            throw ServerError.bind(host: configuration.host, port: configuration.port, underlying: error)
        }
        if let timeout = configuration.modelIdleTimeout {
            let seconds = Double(timeout.nanoseconds) / 1e9
            idleTimer = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                context.unloadIdle(after: seconds)
            }
        }
        logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port ?? configuration.port)",
                                            "model": "\(configuration.modelName)", "lazy": "\(configuration.lazyLoad)"])
    }

    /// Admits a connection, or returns why not.
    private func register(_ channel: any Channel) -> ErrorFrame? {
        lock.withLock {
            if stopped { return ErrorFrame(code: .shuttingDown, message: "the server is shutting down") }
            guard connections.count < configuration.maxConnections else {
                return ErrorFrame(code: .serverBusy, message: "the server is at its limit of \(configuration.maxConnections) connections")
            }
            connections[ObjectIdentifier(channel)] = channel
            host.metrics.connectionOpened()
            return nil
        }
    }

    private func unregister(_ channel: any Channel) {
        lock.withLock {
            if connections.removeValue(forKey: ObjectIdentifier(channel)) != nil { host.metrics.connectionClosed() }
        }
    }

    /// Blocks until the listening socket is closed (by `shutdown()`).
    public func waitUntilClosed() throws {
        try channel?.closeFuture.wait()
    }

    /// Stops accepting, lets in-flight rounds finish (up to the grace period) and tells every
    /// client the server is going away, then stops the model thread. Safe to call twice.
    public func shutdown() {
        let open: [any Channel]? = lock.withLock {
            if stopped { return nil }
            stopped = true
            finished.enter()
            return Array(connections.values)
        }
        // A second call waits for the first to finish (its event loops may already be gone).
        guard let open else {
            finished.wait()
            return
        }
        defer { finished.leave() }
        logger.info("shutting down", metadata: ["connections": "\(open.count)"])
        try? channel?.close().wait()
        for c in open { c.pipeline.fireUserInboundEventTriggered(ShutdownEvent()) }
        let deadline = NIODeadline.now() + configuration.shutdownGrace
        for c in open {
            let remaining = deadline - NIODeadline.now()
            let closed = c.closeFuture
            let timeout = c.eventLoop.scheduleTask(in: max(remaining, .zero)) { c.close(promise: nil) }
            try? closed.wait()
            timeout.cancel()
        }
        idleTimer?.cancel()
        hosts.forEach { $0.stop() }
        try? group.syncShutdownGracefully()
        logger.info("stopped")
    }
}

/// Errors of the server itself.
public enum ServerError: Error, CustomStringConvertible {
    case bind(host: String, port: Int, underlying: any Error)

    public var description: String {
        switch self {
        case let .bind(host, port, e): "cannot listen on \(host):\(port): \(e)"
        }
    }
}
