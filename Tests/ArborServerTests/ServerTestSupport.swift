import ArborEngine
import ArborHost
import ArborRemote
import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A tiny model on disk and a server for it on a free loopback port.
final class TestServer: @unchecked Sendable {
    let directory: TemporaryDirectory
    let modelPath: String
    let bundle: ModelBundle
    private(set) var server: VerificationServer
    var configuration: ServerConfiguration

    init(lazy: Bool = false, configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        directory = try TemporaryDirectory()
        var tiny = TinyModel(.qwen2)
        tiny.weightScale = 1.5  // Sharper distributions: greedy choices far from ties.
        modelPath = try tiny.write(to: directory)
        bundle = try ModelBundle.load(path: modelPath, threads: 1)
        configuration = ServerConfiguration(modelPath: modelPath, modelName: "tiny-qwen2", serverName: "test", port: 0,
                                            lazyLoad: lazy, threads: 1, maxSessionTokens: 256)
        configure(&configuration)
        server = try VerificationServer(configuration: configuration, logger: Self.logger)
        try server.start()
    }

    /// Warnings and errors only: the servers' routine lines would drown the test output.
    static let logger: Logger = {
        var l = Logger(label: "arbor.serve.test")
        l.logLevel = .warning
        return l
    }()

    var port: Int { server.port! }
    var metrics: ServerMetrics { server.metrics }

    /// Stops the server and starts a new one on the same port (a restarted server process).
    func restart() throws {
        let p = port
        server.shutdown()
        configuration.port = p
        server = try VerificationServer(configuration: configuration, logger: Self.logger)
        try server.start()
    }

    func shutdown() { server.shutdown() }

    func target(reconnects: Int = 2, token: String = "") -> RemoteTarget {
        RemoteTarget(host: "127.0.0.1", port: port, authToken: token, clientName: "test",
                     requestTimeout: .seconds(30), reconnectAttempts: reconnects, initialBackoff: .milliseconds(50))
    }

    func remote(reconnects: Int = 2, token: String = "") throws -> RemoteVerifier {
        try RemoteVerifier(target: target(reconnects: reconnects, token: token), expectedVocabularyHash: bundle.tokenizer.vocabularyFingerprint)
    }

    func prompt(_ i: Int) -> [Int32] {
        bundle.promptTokens(["the cat sat on the mat", "in the beginning", "a tree of tokens", "hello there"][i % 4] + String(repeating: " the", count: i % 5))
    }

    /// Plain greedy output of the target in this process.
    func local(_ prompt: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy) throws -> [Int32] {
        let g = TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer)
        return try g.generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: maxTokens, sampling: sampling, stopAtEndOfText: false)).tokens
    }

    func parameters(_ maxTokens: Int, sampling: SamplingParameters = .greedy) -> GenerationParameters {
        GenerationParameters(maxTokens: maxTokens, sampling: sampling, stopAtEndOfText: false)
    }

    deinit { server.shutdown() }
}

/// Drafts the expected continuation with seeded corruption: some nodes right, some wrong, some
/// siblings — so rounds accept a few tokens and reject others. `onRound` runs before each draft.
final class ScriptedDrafter: Drafter {
    let expected: [Int32]
    let promptCount: Int
    var rng: SplitMix64
    let vocabulary: Int
    var onRound: (Int) throws -> Void = { _ in }
    private(set) var rounds = 0
    var name: String { "scripted" }

    init(expected: [Int32], promptCount: Int, seed: UInt64, vocabulary: Int) {
        self.expected = expected
        self.promptCount = promptCount
        rng = SplitMix64(seed: seed)
        self.vocabulary = vocabulary
    }

    func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        Draft(tree: try proposeTree(context: context, budget: budget))
    }

    func proposeTree(context: [Int32], budget: DraftBudget) throws -> TokenTree {
        rounds += 1
        try onRound(rounds)
        var tree = TokenTree()
        let at = context.count - promptCount
        var parent = -1
        for d in 0..<min(budget.maxDepth, 4) where tree.count < budget.maxNodes {
            let right = at + d < expected.count ? expected[at + d] : 0
            let wrong = Int32(rng.next() % UInt64(vocabulary))
            let token = rng.next() % 4 == 0 ? wrong : right
            // A sibling with another token now and then (a tree, not a chain).
            if rng.next() % 3 == 0, tree.count + 1 < budget.maxNodes, wrong != token {
                tree.append(token: wrong, parent: parent, confidence: 0.3)
            }
            parent = tree.append(token: token, parent: parent, confidence: 0.9)
        }
        return tree
    }
}

/// A blocking TCP client that speaks raw bytes, for the bad-input and fault tests.
final class RawClient {
    let fd: Int32
    private var pending = ByteBuffer()

    /// Connects to the loopback `port` from `source` (any 127.x.y.z address is this machine's, so
    /// one test can play several peers).
    init(port: Int, source: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        let b = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard b == 0 else { close(fd); throw POSIXError(.EADDRNOTAVAIL) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    func send(_ buffer: ByteBuffer) { send(Array(buffer.readableBytesView)) }
    func send(_ m: WireMessage) { send(WireCodec.encode(m)) }

    enum Read: Equatable {
        case message(WireMessage)
        case closed
        case timedOut
    }

    /// The next frame from the server, `.closed` at end of stream, `.timedOut` after `seconds`.
    func read(seconds: Double = 5) -> Read {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let f = try? WireFrameReader().next(from: &pending), case let .message(m, _) = f { return .message(m) }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return .timedOut }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000) + 1) > 0 else { return .timedOut }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return .closed }
            pending.writeBytes(chunk[0..<n])
        }
    }

    /// Reads until the server closes; whether it did within `seconds`.
    func closesWithin(seconds: Double) -> Bool {
        while true {
            switch read(seconds: seconds) {
            case .closed: return true
            case .timedOut: return false
            case .message: continue
            }
        }
    }

    /// hello → server info.
    func handshake(token: String = "") -> ServerInfo? {
        send(.hello(Hello(authToken: token, clientName: "raw")))
        if case let .message(.serverInfo(info)) = read() { return info }
        return nil
    }

    /// hello, open a greedy session and read `prompt`.
    func startSession(prompt: [UInt32], capacity: UInt32 = 128) -> Bool {
        guard handshake() != nil else { return false }
        send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: capacity)))
        guard case .message(.sessionOpened) = read() else { return false }
        send(.prefill(Prefill(isFinal: true, tokens: prompt)))
        guard case .message(.prefilled) = read() else { return false }
        return true
    }

    /// The error code of the next frame, if it is an error (an `admission` frame before it, as
    /// with a refused hello, is skipped).
    func errorCode() -> WireErrorCode? {
        switch read() {
        case let .message(.error(e)): return e.code
        case .message(.admission): return errorCode()
        default: return nil
        }
    }

    /// Whether the connection still answers a ping.
    func answersPing() -> Bool {
        send(.ping(nonce: 99))
        return read() == .message(.pong(nonce: 99))
    }
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A frame with raw version, type and payload bytes.
func rawFrame(version: UInt8 = WireCodec.version, type: UInt8, payload: [UInt8]) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeInteger(UInt32(payload.count + 2))
    b.writeInteger(version)
    b.writeInteger(type)
    b.writeBytes(payload)
    return b
}
