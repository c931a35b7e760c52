import ArborEngine
import ArborGGUF
import ArborRuntime
import ArborServer
import ArborTokenizers
import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore

/// `arbor serve`: the verification server a remote drafter talks to.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a target model for remote speculative decoding (docs/PROTOCOL.md).",
        discussion: """
            Clients run the drafter and send draft trees; the server scores each tree with the \
            target in one pass and answers with the accepted path. Each connection holds one \
            session with its own KV cache. SIGINT or SIGTERM stops the server: rounds in flight \
            finish, clients are told it is going away.
            """)

    @Option(name: .customLong("model"), help: ArgumentHelp(
        "Target model (alias or GGUF path); repeat to serve several (the first is the default; the others load on first use).",
        valueName: "alias|path"))
    var models: [String] = []
    @Option(name: .customLong("model-idle-timeout"), help: "With several models: unload a model no session has used for this many seconds (0: never).")
    var modelIdleTimeout = 600
    @Option(name: .customLong("model-memory-gb"), help: "With several models: most GB of model files loaded at once (0: no limit); idle models are unloaded to make room.")
    var modelMemoryGB = 0.0
    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 7878
    @Flag(name: .customLong("lazy-load"), help: "Build the model when the first session needs it, not at start-up.")
    var lazyLoad = false
    @Option(name: .customLong("auth-token-file"), help: "A file holding the token clients must send (first line).")
    var authTokenFile: String?
    @Option(name: .customLong("max-sessions"), help: "Most clients served at once (each holds a session slot).")
    var maxSessions = 64
    @Option(name: .customLong("max-queue"), help: "Most authenticated clients waiting for a session slot, served in arrival order (0: refuse at once when full).")
    var maxQueue = 256
    @Option(name: .customLong("max-queue-wait"), help: "Most seconds a client waits in the queue before it is told the server is busy.")
    var maxQueueWait = 60.0
    @Option(name: .customLong("max-connections"), help: "Most TCP connections at once (default: max-sessions + max-queue + 256); when full, the oldest connection still in its handshake is dropped.")
    var maxConnections: Int?
    @Option(name: .customLong("max-pending-per-address"), help: "Most connections per source address that have not completed the handshake.")
    var maxPendingPerAddress = 64
    @Option(name: .customLong("handshake-timeout"), help: "Seconds a new connection has to complete its hello (the pre-auth deadline).")
    var handshakeTimeout = 5.0
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve the protocol over TLS (with --tls-key).")
    var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKey: String?
    @Option(name: .customLong("metrics-port"), help: "Serve GET /health and Prometheus GET /metrics over HTTP on this port (0: any free port, printed at start).")
    var metricsPort: Int?
    @Option(name: .customLong("idle-timeout"), help: "Seconds of client silence before its connection and session are dropped.")
    var idleTimeout = 300
    @Option(help: "Model worker threads (default: all cores).")
    var threads: Int?
    @Option(help: "A name for this server, shown to clients.")
    var name = "arbor"
    @Option(name: .customLong("max-session-tokens"), help: "Most tokens one session may hold (bounds its KV cache).")
    var maxSessionTokens = 8192
    @Option(name: .customLong("max-tree-nodes"), help: "Most nodes in one draft tree.")
    var maxTreeNodes = 256
    @Option(name: .customLong("max-batch-tokens"), help: "Most tokens in one target pass that merges several sessions' queued rounds (1: never merge).")
    var maxBatchTokens = 64
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"
    @Option(name: .customLong("price-per-hour"), help: "Price of this server's time per hour, advertised to clients (default: not advertised).")
    var pricePerHour: Double?
    @Option(name: .customLong("watts-per-core"), help: "Active power of one busy core (W) for the energy model, used where RAPL is not readable.")
    var wattsPerCore = EnergyMeter.defaultWattsPerCore
    @Flag(name: .customLong("profile-target"), help: "At start-up, time target passes of batch sizes 1–64 and advertise them to clients (loads the model at start-up).")
    var profileTarget = false
    @Option(name: .customLong("max-decode-tokens"), help: "Most tokens a client may ask this server to decode by itself in one exchange (run-ahead rounds; 0: not offered).")
    var maxDecodeTokens = 64
    @Option(name: .customLong("decode-drafter"), help: ArgumentHelp(
        "Speculate on the server inside run-ahead rounds of the first model's sessions: a drafter of its own (model:<alias|path>, ngram, suffix, cross:<alias|path>, or several joined by +); its time is billed as the server's.",
        valueName: "drafter"))
    var decodeDrafter: String?

    /// Server-side speculation for `--decode-drafter`: the draft models are loaded once, now, and
    /// one drafter is built here to check it fits the target (a draft of another vocabulary is
    /// refused now, not at a client's first run-ahead); each session then gets its own drafter
    /// over the same models.
    static func decodeDrafting(_ text: String, targetPath: String, targetName: String, threads: Int) throws -> DecodeDrafting {
        let choice = try DrafterChoice(parsing: text)
        let tokenizer = try makeTokenizer(try GGUFFile(path: targetPath))
        var bundles: [String: ModelBundle] = [:]
        for name in choice.draftModels where bundles[name] == nil {
            bundles[name] = try ModelBundle.load(path: try ModelOptions.resolve(name), threads: threads)
        }
        let loaded = bundles
        func make() throws -> any Drafter {
            let d = try choice.makeDrafter(targetTokenizer: tokenizer, targetName: targetName, loadModel: { name in
                guard let b = loaded[name] else { throw ValidationError("draft model \(name) was not loaded") }
                return b
            })
            guard let d else { throw ValidationError("--decode-drafter \(text) makes no drafter") }
            return d
        }
        _ = try make()
        // Chains for draft models, as on a client (a CPU draft model pays for every sibling).
        let budget = DraftBudget(maxNodes: 16, maxDepth: 8, maxWidth: choice.isModel ? 1 : 4)
        return DecodeDrafting(name: choice.description, configuration: SpeculationConfiguration(budget: budget), makeDrafter: make)
    }

    /// The models served, the default target when none is given.
    var modelNames: [String] { models.isEmpty ? [ModelOptions.defaultTarget] : models }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard Set(modelNames).count == modelNames.count else { throw ValidationError("a --model is given twice") }
        guard modelIdleTimeout >= 0, modelMemoryGB >= 0, modelMemoryGB.isFinite else {
            throw ValidationError("--model-idle-timeout and --model-memory-gb must be ≥ 0")
        }
        guard maxSessions >= 1 else { throw ValidationError("--max-sessions must be at least 1") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be ≥ 0") }
        guard maxQueueWait.isFinite, maxQueueWait > 0 else { throw ValidationError("--max-queue-wait must be > 0") }
        guard handshakeTimeout.isFinite, handshakeTimeout > 0 else { throw ValidationError("--handshake-timeout must be > 0") }
        guard maxPendingPerAddress >= 1 else { throw ValidationError("--max-pending-per-address must be at least 1") }
        if let maxConnections, maxConnections <= maxSessions + maxQueue {
            throw ValidationError("--max-connections must exceed --max-sessions + --max-queue (\(maxSessions + maxQueue)), so authenticated clients always have room")
        }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        for (flag, path) in [("--tls-cert", tlsCert), ("--tls-key", tlsKey)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) { throw ValidationError("\(flag) \(path): no such file, or not readable") }
        }
        if let metricsPort { guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be 0…65535") } }
        guard idleTimeout >= 1 else { throw ValidationError("--idle-timeout must be at least 1 second") }
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be at least 1") }
        guard maxSessionTokens >= 2, maxTreeNodes >= 1 else { throw ValidationError("--max-session-tokens must be ≥ 2 and --max-tree-nodes ≥ 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if let pricePerHour { guard pricePerHour.isFinite, pricePerHour >= 0 else { throw ValidationError("--price-per-hour must be ≥ 0") } }
        guard wattsPerCore.isFinite, wattsPerCore > 0 else { throw ValidationError("--watts-per-core must be > 0") }
        guard (0...65535).contains(maxDecodeTokens) else { throw ValidationError("--max-decode-tokens must be 0…65535") }
        if let decodeDrafter {
            guard maxDecodeTokens > 0 else { throw ValidationError("--decode-drafter needs run-ahead rounds (--max-decode-tokens > 0)") }
            let choice: DrafterChoice
            do { choice = try DrafterChoice(parsing: decodeDrafter) } catch { throw ValidationError("--decode-drafter: \(error)") }
            if choice == .none || choice == .auto { throw ValidationError("--decode-drafter needs a drafter (not none or auto)") }
        }
    }

    func run() throws {
        let token = try authTokenFile.map(AuthTokenFile.read)
        if profileTarget && lazyLoad { StandardStreams.write("arbor serve: --profile-target loads the model at start-up; --lazy-load is ignored\n") }
        StandardStreams.bootstrapLogging(level: logLevel)
        let paths = try modelNames.map(ModelOptions.resolve)
        var configuration = ServerConfiguration(
            modelPath: paths[0], modelName: modelNames[0], serverName: name, host: host, port: port, lazyLoad: lazyLoad,
            authToken: token, maxSessions: maxSessions, maxQueue: maxQueue, maxQueueWait: .milliseconds(Int64(maxQueueWait * 1000)),
            maxConnections: maxConnections, maxPendingPerAddress: maxPendingPerAddress, idleTimeout: .seconds(Int64(idleTimeout)),
            handshakeTimeout: .milliseconds(Int64(handshakeTimeout * 1000)),
            threads: threads ?? ModelRegistryDefaults.threads, maxTreeNodes: maxTreeNodes, maxSessionTokens: maxSessionTokens,
            maxBatchTokens: maxBatchTokens, pricePerHour: pricePerHour, wattsPerCore: wattsPerCore, profileTarget: profileTarget,
            maxDecodeTokens: maxDecodeTokens)
        configuration.extraModels = Array(zip(modelNames, paths).dropFirst()).map { (name: $0.0, path: $0.1) }
        if modelNames.count > 1 && modelIdleTimeout > 0 { configuration.modelIdleTimeout = .seconds(Int64(modelIdleTimeout)) }
        configuration.modelMemoryBudget = UInt64(modelMemoryGB * 1_073_741_824)
        if let tlsCert, let tlsKey { configuration.tls = ServerTLS(certificatePath: tlsCert, keyPath: tlsKey) }
        configuration.metricsPort = metricsPort
        if let decodeDrafter {
            configuration.decodeDrafting = try Self.decodeDrafting(decodeDrafter, targetPath: paths[0], targetName: modelNames[0],
                                                                   threads: configuration.threads)
            StandardStreams.write("arbor serve: run-ahead rounds speculate with \(decodeDrafter) on the server\n")
        }
        let server = try VerificationServer(configuration: configuration)
        if let details = server.details, !details.targetProfile.isEmpty {
            var table = "target profile (median of 3 passes):\n  batch        ms   ms/token\n"
            for p in details.targetProfile {
                table += String(format: "  %5d  %8.2f  %9.3f\n", Int(p.batchSize), Double(p.milliseconds), Double(p.milliseconds) / Double(max(p.batchSize, 1)))
            }
            StandardStreams.write(table)
        }
        try server.start()

        // Stop on SIGINT / SIGTERM: finish in-flight rounds, tell clients, exit.
        let signalQueue = DispatchQueue(label: "arbor.serve.signals")
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            source.setEventHandler { server.shutdown() }
            source.resume()
            sources.append(source)
        }
        StandardStreams.write("arbor serve: listening on \(host):\(server.port ?? port)\(tlsCert != nil ? " (TLS)" : "")\n")
        if let p = server.metricsPort { StandardStreams.write("arbor serve: metrics on http://\(host):\(p)/metrics, health on /health\n") }
        try server.waitUntilClosed()
        // The listening socket closes first; wait for shutdown to finish with the connections.
        server.shutdown()
        _ = sources
    }
}
