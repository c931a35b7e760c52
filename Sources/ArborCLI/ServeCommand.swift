import ArborServer
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

    @OptionGroup var model: ModelOptions
    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 7878
    @Flag(name: .customLong("lazy-load"), help: "Build the model when the first session needs it, not at start-up.")
    var lazyLoad = false
    @Option(name: .customLong("auth-token-file"), help: "A file holding the token clients must send (first line).")
    var authTokenFile: String?
    @Option(name: .customLong("max-sessions"), help: "Most clients served at once.")
    var maxSessions = 64
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

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard maxSessions >= 1 else { throw ValidationError("--max-sessions must be at least 1") }
        guard idleTimeout >= 1 else { throw ValidationError("--idle-timeout must be at least 1 second") }
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be at least 1") }
        guard maxSessionTokens >= 2, maxTreeNodes >= 1 else { throw ValidationError("--max-session-tokens must be ≥ 2 and --max-tree-nodes ≥ 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() throws {
        var token: String?
        if let authTokenFile {
            let text = try String(contentsOfFile: authTokenFile, encoding: .utf8)
            guard let line = text.split(whereSeparator: \.isNewline).first.map(String.init), !line.isEmpty else {
                throw ValidationError("\(authTokenFile) holds no token")
            }
            token = line
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let path = try model.resolve()
        let configuration = ServerConfiguration(
            modelPath: path, modelName: model.model, serverName: name, host: host, port: port, lazyLoad: lazyLoad,
            authToken: token, maxSessions: maxSessions, idleTimeout: .seconds(Int64(idleTimeout)),
            threads: threads ?? ModelRegistryDefaults.threads, maxTreeNodes: maxTreeNodes, maxSessionTokens: maxSessionTokens,
            maxBatchTokens: maxBatchTokens)
        let server = try VerificationServer(configuration: configuration)
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
        StandardStreams.write("arbor serve: listening on \(host):\(server.port ?? port)\n")
        try server.waitUntilClosed()
        // The listening socket closes first; wait for shutdown to finish with the connections.
        server.shutdown()
        _ = sources
    }
}
