import ArborEngine
import NIOCore

/// How `arbor serve` runs: where it listens, what it serves, and the limits that keep one
/// client from taking more than its share.
public struct ServerConfiguration: Sendable {
    /// Path of the target's GGUF file.
    public var modelPath: String
    /// The model name reported to clients (an alias or the file name).
    public var modelName: String
    /// The server name reported to clients.
    public var serverName: String
    public var host: String
    /// 0 picks a free port (see `VerificationServer.port`).
    public var port: Int
    /// Build the model on the first session instead of at start-up.
    public var lazyLoad: Bool
    /// The shared secret clients must send in hello; nil accepts any client.
    public var authToken: String?
    /// Most connections that passed hello and hold a session slot at once (each holds at most
    /// one session).
    public var maxSessions: Int
    /// Most authenticated connections waiting for a session slot (first come, first served);
    /// beyond it a hello gets `serverBusy` with a retry-after.
    public var maxQueue: Int
    /// Longest a queued connection waits for a slot before `serverBusy`.
    public var maxQueueWait: TimeAmount
    /// Most TCP connections at once, all kinds. When full, a new connection evicts the oldest
    /// one still in its handshake (an authenticated one is never evicted).
    public var maxConnections: Int
    /// Most connections per source address that have not completed the handshake; more are
    /// refused at once (so one peer's idle connections cannot fill the server).
    public var maxPendingPerAddress: Int
    /// A connection with no frame from its client for this long is closed (its session freed).
    public var idleTimeout: TimeAmount
    /// Hello must be accepted within this time of connecting (the pre-auth deadline; separate
    /// from the frame deadline).
    public var handshakeTimeout: TimeAmount
    /// A frame whose first byte arrived must complete within this time.
    public var frameTimeout: TimeAmount
    /// Worker threads of the model.
    public var threads: Int
    /// Most nodes in one verify.
    public var maxTreeNodes: Int
    /// Most tokens one session may hold (prompt + output + one tree): bounds its KV cache.
    public var maxSessionTokens: Int
    /// Largest frame accepted.
    public var maxFrameBytes: Int
    /// How long shutdown waits for in-flight rounds before closing connections.
    public var shutdownGrace: TimeAmount
    /// Most tokens in one target pass that merges queued rounds of several sessions (1: never
    /// merge).
    public var maxBatchTokens: Int
    /// The price per hour of this server's time advertised in `serverDetails`; nil: none.
    public var pricePerHour: Double?
    /// Active power per busy core, W, of the energy model used where RAPL is not readable
    /// (passed to each session's `EnergyMeter`).
    public var wattsPerCore: Double
    /// Time target passes of batch sizes 1, 2, 4 … 64 (up to `maxTreeNodes + 1`) at start-up
    /// and advertise them in `serverDetails`. Builds the model at start-up (overrides `lazyLoad`).
    public var profileTarget: Bool
    /// Answer the cost extension (`capabilities` → `serverDetails`, `resultCost`). false makes
    /// the server behave exactly like one from before the extension (compatibility tests).
    public var costExtension: Bool
    /// Most tokens one `decode` (a run-ahead round: the target decoding by itself) may ask for;
    /// 0 turns the extension off (`decodeQuery` then gets `unknownType`, as from an older server).
    public var maxDecodeTokens: Int
    /// More target models beside the first (name, GGUF path): loaded on their first session,
    /// offered through the models extension (`listModels`, `selectModel`).
    public var extraModels: [(name: String, path: String)] = []
    /// A model no session has used for this long is unloaded (the first model too, when others
    /// are configured); nil: never.
    public var modelIdleTimeout: TimeAmount? = nil
    /// Most bytes of model files loaded at once (0: no limit). To load another, idle models are
    /// unloaded least recently used first; a session whose model cannot fit gets an error.
    public var modelMemoryBudget: UInt64 = 0
    /// TLS for the verification protocol (nil: plain TCP).
    public var tls: ServerTLS? = nil
    /// Serve `/health` and Prometheus `/metrics` over HTTP on this port (nil: no metrics
    /// endpoint; 0: any free port, see `VerificationServer.metricsPort`).
    public var metricsPort: Int? = nil
    /// Speculate on the server inside run-ahead rounds of sessions on the first model (nil: a
    /// run-ahead is plain target passes).
    public var decodeDrafting: DecodeDrafting? = nil

    public init(modelPath: String, modelName: String, serverName: String = "arbor", host: String = "127.0.0.1", port: Int = 7878,
                lazyLoad: Bool = false, authToken: String? = nil, maxSessions: Int = 64, maxQueue: Int = 256,
                maxQueueWait: TimeAmount = .seconds(60), maxConnections: Int? = nil, maxPendingPerAddress: Int = 64,
                idleTimeout: TimeAmount = .seconds(300), handshakeTimeout: TimeAmount = .seconds(5),
                frameTimeout: TimeAmount = .seconds(10), threads: Int = 2, maxTreeNodes: Int = 256,
                maxSessionTokens: Int = 8192, maxFrameBytes: Int = 4 << 20, shutdownGrace: TimeAmount = .seconds(10), maxBatchTokens: Int = 64,
                pricePerHour: Double? = nil, wattsPerCore: Double = EnergyMeter.defaultWattsPerCore, profileTarget: Bool = false,
                costExtension: Bool = true, maxDecodeTokens: Int = 64) {
        self.modelPath = modelPath
        self.modelName = modelName
        self.serverName = serverName
        self.host = host
        self.port = port
        self.lazyLoad = lazyLoad
        self.authToken = authToken
        self.maxSessions = maxSessions
        self.maxQueue = max(0, maxQueue)
        self.maxQueueWait = maxQueueWait
        // Room for every authenticated connection plus pending ones; never less than that.
        self.maxConnections = max(maxConnections ?? (maxSessions + self.maxQueue + 256), maxSessions + self.maxQueue + 1)
        self.maxPendingPerAddress = max(1, maxPendingPerAddress)
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.frameTimeout = frameTimeout
        self.threads = threads
        self.maxTreeNodes = maxTreeNodes
        self.maxSessionTokens = maxSessionTokens
        self.maxFrameBytes = maxFrameBytes
        self.shutdownGrace = shutdownGrace
        self.maxBatchTokens = maxBatchTokens
        self.pricePerHour = pricePerHour
        self.wattsPerCore = wattsPerCore
        self.profileTarget = profileTarget
        self.costExtension = costExtension
        self.maxDecodeTokens = max(0, min(maxDecodeTokens, Int(UInt16.max)))
    }
}

/// The server's certificate chain and private key (PEM files) for TLS.
public struct ServerTLS: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String
    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}
