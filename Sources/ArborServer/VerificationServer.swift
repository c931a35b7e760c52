import ArborEngine
import ArborHost
import ArborWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// What every connection handler shares: configuration, the targets, the session slots.
final class ServerContext: @unchecked Sendable {
    let configuration: ServerConfiguration
    /// The target models; the first is the one hello answers with.
    let hosts: [TargetHost]
    let models: [ModelChoice]
    /// The answer to `capabilities`; nil when the cost extension is off.
    let details: ServerDetails?
    private let lock = NSLock()
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
        admission = AdmissionControl(limits: AdmissionControl.Limits(
            maxConnections: configuration.maxConnections, maxPendingPerAddress: configuration.maxPendingPerAddress,
            maxSessions: configuration.maxSessions, maxQueue: configuration.maxQueue,
            maxQueueWaitMilliseconds: Double(configuration.maxQueueWait.nanoseconds) / 1e6))
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

    // MARK: Admission

    /// Every open connection by id (for eviction, queue promotion and shutdown).
    private var channels: [UInt64: any Channel] = [:]
    private var admission: AdmissionControl
    private var connectionCounter: UInt64 = 0
    /// Set by shutdown: every new connection is refused.
    private(set) var stopped = false

    var metrics: ServerMetrics { host.metrics }

    static func nowMilliseconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

    /// Registers a new connection: its id, or why it is refused. May evict the oldest connection
    /// still in its handshake to make room.
    func connect(_ channel: any Channel) -> (id: UInt64, refusal: ErrorFrame?) {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        let (id, decision, evicted): (UInt64, AdmissionControl.ConnectDecision, (any Channel)?) = lock.withLock {
            connectionCounter += 1
            let id = connectionCounter
            if stopped { return (id, .refuse(ErrorFrame(code: .shuttingDown, message: "the server is shutting down"), reason: "shutting_down"), nil) }
            let d = admission.connect(id, address: address)
            var evicted: (any Channel)?
            switch d {
            case .accept: channels[id] = channel
            case let .acceptEvicting(old):
                channels[id] = channel
                // Stays registered until its close, which then counts it as closed.
                evicted = channels[old]
            case .refuse: break
            }
            publishAdmission()
            return (id, d, evicted)
        }
        switch decision {
        case .accept:
            metrics.connectionOpened()
        case .acceptEvicting:
            metrics.connectionOpened()
            metrics.refused("evicted")
            evicted?.pipeline.fireUserInboundEventTriggered(EvictedEvent())
        case let .refuse(error, reason):
            metrics.refused(reason)
            return (id, error)
        }
        return (id, nil)
    }

    /// Connection `id` had its hello accepted: a slot, a place in the queue, or a refusal.
    func hello(_ id: UInt64) -> AdmissionControl.HelloDecision {
        let d = lock.withLock {
            let d = admission.hello(id, now: Self.nowMilliseconds())
            publishAdmission()
            return d
        }
        switch d {
        case .admit: metrics.admitted(afterSeconds: 0)
        case .queue: break
        case .refuse: metrics.refused("queue_full")
        }
        return d
    }

    /// Connection `id` closed: its slot (if it held one) goes to the head of the queue.
    func closed(_ id: UInt64) {
        let (wasOpen, promoted): (Bool, [(any Channel, Double)]) = lock.withLock {
            let wasOpen = channels.removeValue(forKey: id) != nil
            let admitted = admission.close(id, now: Self.nowMilliseconds())
            publishAdmission()
            return (wasOpen, admitted.compactMap { a in channels[a.id].map { ($0, a.waited) } })
        }
        if wasOpen { metrics.connectionClosed() }
        for (channel, waited) in promoted {
            metrics.admitted(afterSeconds: waited / 1000)
            channel.pipeline.fireUserInboundEventTriggered(AdmittedEvent(waitedMilliseconds: waited))
        }
    }

    /// Refuses queued connections whose deadline passed (called periodically).
    func expireQueue() {
        let expired: [any Channel] = lock.withLock {
            let gone = admission.expire(now: Self.nowMilliseconds())
            publishAdmission()
            return gone.compactMap { channels[$0] }
        }
        for c in expired {
            metrics.refused("queue_timeout")
            c.pipeline.fireUserInboundEventTriggered(QueueExpiredEvent(
                waitedMilliseconds: Double(configuration.maxQueueWait.nanoseconds) / 1e6,
                retryAfterMilliseconds: lock.withLock { admission.estimatedWait(position: 1) }))
        }
    }

    /// Stops admitting; returns every open connection.
    func stop() -> [any Channel] {
        lock.withLock {
            stopped = true
            return Array(channels.values)
        }
    }

    /// Lock held.
    private func publishAdmission() {
        let active = admission.activeCount, queued = admission.queue.count
        metrics.admission(pending: admission.connectionCount - active - queued, active: active, queued: queued)
    }

    func nextSessionID() -> UInt32 {
        lock.withLock {
            sessionCounter &+= 1
            return sessionCounter
        }
    }
}

/// Answers a connection the server cannot take with one error frame, then closes it. Without
/// an error (a TLS server: a plain frame would mean nothing to a TLS client) it just closes.
final class RefuseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let error: ErrorFrame?
    init(_ error: ErrorFrame?) { self.error = error }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        guard let error else {
            channel.close(promise: nil)
            return
        }
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
    private var stopped = false
    private let finished = DispatchGroup()
    private var queueTimer: RepeatedTask?
    /// The TLS context when `configuration.tls` is set (built at init: bad files fail early).
    private let tls: NIOSSLContext?
    private var metricsEndpoint: MetricsEndpoint?

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
                // Server-side speculation plans its first rounds from the same timings.
                configuration.decodeDrafting?.seedTargetTimings(timings.map { (batch: $0.batchSize, milliseconds: $0.milliseconds) })
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
        do {
            tls = try configuration.tls.map(ServerTLSContext.make)
        } catch {
            hosts.forEach { $0.stop() }
            throw error
        }
        context = ServerContext(configuration: configuration, hosts: hosts, details: details)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Batch sizes timed by `ServerConfiguration.profileTarget` (those up to `maxTreeNodes + 1`):
    /// every size a round usually sends, because a CPU target's time is a staircase, not a line
    /// (the 1.5B on one Zen 5 core: 31.2, 33.2, 33.9, 40.9, 42.9, 49.0 ms for 1…6 tokens — the
    /// matmul kernels take tokens three at a time), and a line through 1, 2, 4, 8 … priced a
    /// 4-node chain 17 % dearer than it is. About 4 s at start-up.
    public static let profileBatchSizes = Array(1...16) + [24, 32, 48, 64]

    /// What the server advertises in `serverDetails` (price, energy source, target profile);
    /// nil when `ServerConfiguration.costExtension` is off.
    public let details: ServerDetails?

    /// Server-wide counters.
    public var metrics: ServerMetrics { host.metrics }

    /// The port the server listens on (useful with port 0); set by `start()`.
    public private(set) var port: Int?

    /// The port of the metrics endpoint (useful with `metricsPort` 0); set by `start()`.
    public var metricsPort: Int? { metricsEndpoint?.port }

    /// Binds and starts accepting connections (and the metrics endpoint, if configured).
    public func start() throws {
        let context = self.context
        let configuration = self.configuration
        let logger = self.logger
        let tls = self.tls
        let limits = WireLimits(maxFrameBytes: configuration.maxFrameBytes)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let (id, refusal) = context.connect(channel)
                if let refusal {
                    // Over a limit or shutting down: say so (in plain text only to plain clients)
                    // and hang up, reading nothing.
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RefuseHandler(tls == nil ? refusal : nil))
                    }
                }
                channel.closeFuture.whenComplete { _ in context.closed(id) }
                return channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let tls { try ops.addHandler(TLSSniffer(context: tls, metrics: context.metrics)) }
                    try ops.addHandlers([
                        ByteCounter(metrics: context.metrics),
                        IdleStateHandler(readTimeout: configuration.idleTimeout),
                        WireFrameHandler(limits: limits, frameTimeout: configuration.frameTimeout),
                        ConnectionHandler(server: context, id: id, logger: logger),
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
        if let metricsPort = configuration.metricsPort {
            do {
                metricsEndpoint = try MetricsEndpoint.start(host: configuration.host, port: metricsPort, group: group,
                                                            metrics: context.metrics, configuration: configuration, hosts: hosts,
                                                            isStopping: { [weak context] in context?.stopped ?? true })
            } catch {
                try? channel?.close().wait()
                throw ServerError.bind(host: configuration.host, port: metricsPort, underlying: error)
            }
        }
        if let timeout = configuration.modelIdleTimeout {
            let seconds = Double(timeout.nanoseconds) / 1e9
            idleTimer = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                context.unloadIdle(after: seconds)
            }
        }
        // Queue deadlines are checked four times a second (a deadline is a bound, not a promise
        // to the millisecond).
        queueTimer = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            context.expireQueue()
        }
        logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port ?? configuration.port)",
                                            "model": "\(configuration.modelName)", "lazy": "\(configuration.lazyLoad)",
                                            "tls": "\(tls != nil)", "metrics_port": "\(metricsPort.map(String.init) ?? "none")"])
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
            return context.stop()
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
        queueTimer?.cancel()
        metricsEndpoint?.close()
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
