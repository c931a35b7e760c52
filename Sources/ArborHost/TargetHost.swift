import ArborEngine
import ArborGGUF
import ArborModels
import ArborTokenizers
import Foundation

/// What the server tells clients about its target before the model is built.
public struct TargetInfo: Sendable {
    public var vocabularyHash: UInt64
    public var vocabularySize: Int
    public var contextLength: Int
    /// Tokens that end a generation (a run-ahead stops after one).
    public var endOfGeneration: Set<Int32> = []
}

/// A session whose rounds the host scores: it hands over its verifier (its own KV cache) on the
/// model thread, or throws when it was closed meanwhile.
public protocol HostedSession: AnyObject, Sendable {
    func activeVerifier() throws -> LocalVerifier
}

/// Owns the target model and runs all work on it, one job at a time, on its own thread. Shared by
/// the verification server (`arbor serve`: one session per client) and the HTTP API (`arbor api`:
/// one per request), so that every user of one model queues fairly and has its rounds merged.
///
/// Jobs run in arrival order. Each session has at most one job queued (a client waits for a
/// result before its next round), so arrival order is round-robin across sessions: a busy
/// session cannot starve another. The model is built at start-up, or by the first job when
/// loading lazily; a failed load fails that job and is retried by the next.
public final class TargetHost: @unchecked Sendable {
    public let info: TargetInfo
    private let path: String
    private let threads: Int
    /// Built on the worker thread only.
    private var model: (any LanguageModel)?

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var head = 0
    private var stopping = false
    private var thread: Thread?
    private var stoppedSemaphore = DispatchSemaphore(value: 0)

    /// Server-wide counters (read from any thread; several hosts of one server share them).
    public let metrics: ServerMetrics

    struct Job {
        let enqueued: UInt64
        let work: Work
    }

    enum Work {
        /// Anything to run on the model thread.
        case general((Result<any LanguageModel, any Error>, _ queueMilliseconds: Double) -> Void)
        /// A session's round: queued rounds of several sessions are scored in one pass.
        case verify(any HostedSession, TokenTree, (Result<VerificationResult, any Error>, _ queueMilliseconds: Double) -> Void)

        var tokens: Int {
            if case let .verify(_, tree, _) = self { return tree.count + 1 }
            return 0
        }
    }

    /// Most tokens one merged verify pass may hold (1: never merge).
    public let maxBatchTokens: Int
    /// Measures every session's target passes (RAPL where readable, else CPU time × W/core).
    public let meter: EnergyMeter

    /// Hosts a model already built (and its tokenizer): from now on only the host's thread may
    /// use it.
    public init(model: any LanguageModel, tokenizer: any Tokenizer, path: String, threads: Int, maxBatchTokens: Int = 64,
                wattsPerCore: Double = EnergyMeter.defaultWattsPerCore, metrics: ServerMetrics = ServerMetrics()) {
        self.metrics = metrics
        self.path = path
        self.threads = threads
        self.maxBatchTokens = maxBatchTokens
        meter = EnergyMeter(wattsPerCore: wattsPerCore)
        info = TargetInfo(vocabularyHash: tokenizer.vocabularyFingerprint, vocabularySize: model.configuration.vocabularySize,
                          contextLength: model.configuration.contextLength, endOfGeneration: tokenizer.endOfGenerationTokens)
        self.model = model
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "arbor-target"
        self.thread = thread
        thread.start()
    }

    /// Reads the file's metadata and tokenizer (cheap: the file is memory-mapped); builds the
    /// model now unless `lazy`.
    public init(path: String, threads: Int, lazy: Bool, maxBatchTokens: Int = 64,
                wattsPerCore: Double = EnergyMeter.defaultWattsPerCore, metrics: ServerMetrics = ServerMetrics()) throws {
        self.metrics = metrics
        self.path = path
        self.threads = threads
        self.maxBatchTokens = maxBatchTokens
        meter = EnergyMeter(wattsPerCore: wattsPerCore)
        let file = try GGUFFile(path: path)
        let tokenizer = try makeTokenizer(file)
        let configuration = try ModelConfiguration(file: file)
        info = TargetInfo(vocabularyHash: tokenizer.vocabularyFingerprint, vocabularySize: configuration.vocabularySize,
                          contextLength: configuration.contextLength, endOfGeneration: tokenizer.endOfGenerationTokens)
        if !lazy { model = try ModelRegistry.load(file, threads: threads) }
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "arbor-target"
        self.thread = thread
        thread.start()
    }

    /// Whether the model has been built.
    public var isLoaded: Bool {
        condition.lock()
        defer { condition.unlock() }
        return model != nil
    }

    /// Sessions open on this host, and when the last one closed (for unloading idle models).
    private var openSessions = 0
    private var idleSince = DispatchTime.now().uptimeNanoseconds

    /// A session starts using the host.
    public func sessionOpened() {
        condition.lock()
        openSessions += 1
        condition.unlock()
    }

    /// A session stopped using the host.
    public func sessionClosed() {
        condition.lock()
        openSessions -= 1
        if openSessions == 0 { idleSince = DispatchTime.now().uptimeNanoseconds }
        condition.unlock()
    }

    /// Whether the model is loaded, how many sessions use it, and for how long it has had none (s).
    public var usage: (loaded: Bool, sessions: Int, idleSeconds: Double) {
        condition.lock()
        defer { condition.unlock() }
        let idle = openSessions > 0 ? 0 : Double(DispatchTime.now().uptimeNanoseconds &- idleSince) / 1e9
        return (model != nil, openSessions, idle)
    }

    /// Drops the model (after the queued work) if no session uses it; the next job loads it
    /// again. Returns whether an unload was queued.
    @discardableResult
    public func unloadIfUnused() -> Bool {
        condition.lock()
        let unused = openSessions == 0 && model != nil
        condition.unlock()
        guard unused else { return false }
        submit { [weak self] _, _ in
            guard let self else { return }
            self.condition.lock()
            // A session may have opened meanwhile: its work is queued behind this job.
            if self.openSessions == 0 { self.model = nil }
            self.condition.unlock()
        }
        return true
    }

    /// Size of the model file, bytes (what loading it costs in memory, roughly).
    public var fileBytes: UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.uint64Value ?? 0
    }

    /// Queues `work` to run on the model's thread; it receives the model (or why there is none)
    /// and how long it waited in the queue.
    public func submit(_ work: @escaping (Result<any LanguageModel, any Error>, Double) -> Void) {
        enqueue(.general(work))
    }

    /// Queues a session's round; it may be scored together with other sessions' queued rounds.
    public func submitVerify(_ session: any HostedSession, _ tree: TokenTree, _ done: @escaping (Result<VerificationResult, any Error>, Double) -> Void) {
        enqueue(.verify(session, tree, done))
    }

    private func enqueue(_ work: Work) {
        condition.lock()
        if stopping {
            condition.unlock()
            switch work {
            case let .general(f): f(.failure(HostError.shuttingDown), 0)
            case let .verify(_, _, f): f(.failure(HostError.shuttingDown), 0)
            }
            return
        }
        jobs.append(Job(enqueued: DispatchTime.now().uptimeNanoseconds, work: work))
        condition.signal()
        condition.unlock()
    }

    /// Times target passes of each batch size on the model thread (building the model if
    /// needed): `repeats` passes each after one warm-up pass, the median kept. Each pass scores
    /// the pending token plus a flat tree of `batchSize − 1` dummy nodes over a short dummy
    /// context, like a verify. Sizes that do not fit the model's context are left out.
    public func profile(batchSizes: [Int], repeats: Int = 3) throws -> [(batchSize: Int, milliseconds: Double)] {
        final class Outcome: @unchecked Sendable {
            var value: Result<[(batchSize: Int, milliseconds: Double)], any Error> = .success([])
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let meter = self.meter
        submit { model, _ in
            outcome.value = model.flatMap { m in Result { try Self.profile(model: m, meter: meter, batchSizes: batchSizes, repeats: repeats) } }
            done.signal()
        }
        done.wait()  // The semaphore orders the write before this read.
        return try outcome.value.get()
    }

    /// The profile of `model` (model thread).
    static func profile(model: any LanguageModel, meter: EnergyMeter, batchSizes: [Int], repeats: Int) throws
        -> [(batchSize: Int, milliseconds: Double)] {
        let sizes = batchSizes.filter { $0 >= 1 }
        guard !sizes.isEmpty else { return [] }
        let vocabulary = model.configuration.vocabularySize
        let prompt = (0..<16).map { Int32(($0 * 7 + 1) % vocabulary) }
        // A flat tree commits at most 2 tokens per pass (one root, the target's own token).
        let passes = 1 + sizes.count * max(repeats, 1)
        let capacity = min(model.configuration.contextLength, prompt.count + 2 * passes + (sizes.max() ?? 1) + 1)
        let verifier = LocalVerifier(model: model)
        verifier.meter = meter
        try verifier.begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: capacity))
        defer { verifier.end() }
        func tree(_ batchSize: Int) -> TokenTree {
            var t = TokenTree()
            for i in 0..<(batchSize - 1) { _ = t.append(token: Int32((i * 13 + 3) % vocabulary), parent: -1) }
            return t
        }
        // Cache slots in use (the pending token is scored with each tree).
        func fits(_ batchSize: Int) -> Bool { verifier.committed.count - 1 + batchSize <= capacity }
        guard fits(sizes[0]) else { return [] }
        _ = try verifier.verify(tree(sizes[0]))  // Warm-up: first-touch of the weights and buffers.
        var out: [(batchSize: Int, milliseconds: Double)] = []
        for b in sizes {
            var times: [Double] = []
            for _ in 0..<max(repeats, 1) {
                guard fits(b) else { return out }
                times.append(try verifier.verify(tree(b)).targetMilliseconds)
            }
            times.sort()
            out.append((b, times[times.count / 2]))
        }
        return out
    }

    /// Runs what is queued, then stops the thread.
    public func stop() {
        condition.lock()
        let wasStopping = stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if !wasStopping { stoppedSemaphore.wait() }
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !stopping { condition.wait() }
            if head == jobs.count {
                condition.unlock()
                break
            }
            // The next job; if it is a round, the rounds queued right behind it join its pass.
            var batch = [jobs[head]]
            head += 1
            var tokens = batch[0].work.tokens
            while tokens > 0, head < jobs.count, jobs[head].work.tokens > 0, tokens + jobs[head].work.tokens <= maxBatchTokens {
                tokens += jobs[head].work.tokens
                batch.append(jobs[head])
                head += 1
            }
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            let now = DispatchTime.now().uptimeNanoseconds
            let waited = batch.map { Double(now &- $0.enqueued) / 1e6 }
            if case let .general(f) = batch[0].work {
                f(loadedModel(), waited[0])
            } else {
                runRounds(batch, waited: waited)
            }
        }
        model = nil
        stoppedSemaphore.signal()
    }

    /// Scores queued rounds of several sessions in one target pass (each verdict exactly what a
    /// pass of its own would give).
    private func runRounds(_ batch: [Job], waited: [Double]) {
        var items: [(verifier: LocalVerifier, tree: TokenTree)] = []
        var owners: [(done: (Result<VerificationResult, any Error>, Double) -> Void, waited: Double)] = []
        for (job, w) in zip(batch, waited) {
            guard case let .verify(session, tree, done) = job.work else { continue }
            switch loadedModel().flatMap({ _ in Result { try session.activeVerifier() } }) {
            case let .success(v):
                items.append((v, tree))
                owners.append((done, w))
            case let .failure(e):
                done(.failure(e), w)
            }
        }
        guard !items.isEmpty else { return }
        let results = items.count == 1 ? [Result { try items[0].verifier.verify(items[0].tree) }] : LocalVerifier.verify(together: items)
        if items.count > 1 { metrics.merged(rounds: items.count) }
        metrics.pass(rounds: items.count, tokens: items.reduce(0) { $0 + $1.tree.count + 1 })
        for (r, o) in zip(results, owners) { o.done(r, o.waited) }
    }

    private func loadedModel() -> Result<any LanguageModel, any Error> {
        if let model { return .success(model) }
        do {
            let built = try ModelRegistry.load(path: path, threads: threads)
            condition.lock()
            model = built
            condition.unlock()
            return .success(built)
        } catch {
            return .failure(error)
        }
    }
}

/// Server-wide counters, safe to read from any thread. What `arbor serve --metrics-port`
/// exports (`ServerMetrics.Snapshot`); `arbor api` reads the merged-pass counters.
public final class ServerMetrics: @unchecked Sendable {
    public init() {}
    private let lock = NSLock()
    private var s = Snapshot()

    /// Upper bounds of the histograms' buckets.
    public static let passRoundBuckets: [Double] = [1, 2, 4, 8, 16, 32]
    public static let passTokenBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    public static let queueWaitBuckets: [Double] = [0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120]

    /// A cumulative histogram: counts per bucket (last = +Inf), sum, count.
    public struct Histogram: Sendable, Equatable {
        public let bounds: [Double]
        public private(set) var counts: [Int]
        public private(set) var sum = 0.0
        public private(set) var count = 0
        init(_ bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count + 1)
        }
        mutating func observe(_ x: Double) {
            counts[bounds.firstIndex { x <= $0 } ?? bounds.count] += 1
            sum += x
            count += 1
        }
    }

    /// Everything at one instant.
    public struct Snapshot: Sendable, Equatable {
        /// Open connections, and by kind (handshake not done, holding a session slot, queued).
        public var connections = 0
        public var pendingConnections = 0
        public var activeConnections = 0
        public var queuedConnections = 0
        public var connectionsAccepted = 0
        /// Connections refused or closed by admission, by reason.
        public var refused: [String: Int] = [:]
        public var sessions = 0
        public var sessionsOpened = 0
        public var reservedTokens = 0
        public var liveCaches = 0
        public var rounds = 0
        public var busyMilliseconds = 0.0
        public var mergedPasses = 0
        public var mergedRounds = 0
        public var passRounds = Histogram(ServerMetrics.passRoundBuckets)
        public var passTokens = Histogram(ServerMetrics.passTokenBuckets)
        /// Seconds from hello to a session slot, for every admitted hello (0 when one was free).
        public var queueWait = Histogram(ServerMetrics.queueWaitBuckets)
        public var bytesReceived = 0
        public var bytesSent = 0
        /// Error frames sent, by code name.
        public var errors: [String: Int] = [:]
        /// Server-side speculation inside run-ahead rounds (`--decode-drafter`): its rounds, the
        /// drafted tokens the target scored, those it accepted, and the drafting time.
        public var decodeSpeculativeRounds = 0
        public var decodeDraftedTokens = 0
        public var decodeAcceptedTokens = 0
        public var decodeDraftMilliseconds = 0.0
    }

    public var snapshot: Snapshot { lock.withLock { s } }

    /// Open connections.
    public var connections: Int { lock.withLock { s.connections } }
    /// Open sessions (connections past hello holding a session).
    public var sessions: Int { lock.withLock { s.sessions } }
    /// Tokens of KV cache capacity reserved by open sessions.
    public var reservedTokens: Int { lock.withLock { s.reservedTokens } }
    /// Sessions whose KV cache is allocated on the model thread.
    public var liveCaches: Int { lock.withLock { s.liveCaches } }
    /// Rounds answered (verify and decode requests).
    public var rounds: Int { lock.withLock { s.rounds } }
    /// Model thread time spent on requests.
    public var busyMilliseconds: Double { lock.withLock { s.busyMilliseconds } }
    /// Target passes that scored the rounds of several sessions at once, and those rounds.
    public var mergedPasses: Int { lock.withLock { s.mergedPasses } }
    public var mergedRounds: Int { lock.withLock { s.mergedRounds } }

    public func connectionOpened() { lock.withLock { s.connections += 1; s.connectionsAccepted += 1 } }
    public func connectionClosed() { lock.withLock { s.connections -= 1 } }
    /// The admission state's counts now.
    public func admission(pending: Int, active: Int, queued: Int) {
        lock.withLock { s.pendingConnections = pending; s.activeConnections = active; s.queuedConnections = queued }
    }
    public func refused(_ reason: String) { lock.withLock { s.refused[reason, default: 0] += 1 } }
    public func admitted(afterSeconds wait: Double) { lock.withLock { s.queueWait.observe(wait) } }
    public func sessionOpened(tokens: Int) { lock.withLock { s.sessions += 1; s.sessionsOpened += 1; s.reservedTokens += tokens } }
    public func sessionClosed(tokens: Int) { lock.withLock { s.sessions -= 1; s.reservedTokens -= tokens } }
    public func cacheAllocated() { lock.withLock { s.liveCaches += 1 } }
    public func cacheReleased() { lock.withLock { s.liveCaches -= 1 } }
    public func roundServed(milliseconds: Double) { lock.withLock { s.rounds += 1; s.busyMilliseconds += milliseconds } }
    public func busy(milliseconds: Double) { lock.withLock { s.busyMilliseconds += milliseconds } }
    public func merged(rounds: Int) { lock.withLock { s.mergedPasses += 1; s.mergedRounds += rounds } }
    /// A verify pass of `rounds` sessions' rounds, `tokens` in all.
    public func pass(rounds: Int, tokens: Int) {
        lock.withLock { s.passRounds.observe(Double(rounds)); s.passTokens.observe(Double(tokens)) }
    }
    public func bytes(received: Int = 0, sent: Int = 0) { lock.withLock { s.bytesReceived += received; s.bytesSent += sent } }
    /// A speculative round of the server's own inside a run-ahead request.
    public func speculated(drafted: Int, accepted: Int, draftMilliseconds: Double) {
        lock.withLock {
            s.decodeSpeculativeRounds += 1
            s.decodeDraftedTokens += drafted
            s.decodeAcceptedTokens += accepted
            s.decodeDraftMilliseconds += draftMilliseconds
        }
    }
    public func errorSent(_ code: String) { lock.withLock { s.errors[code, default: 0] += 1 } }
}

/// Errors of the model host.
public enum HostError: Error, CustomStringConvertible {
    case shuttingDown
    case sessionCancelled

    public var description: String {
        switch self {
        case .shuttingDown: "the server is shutting down"
        case .sessionCancelled: "the session was closed"
        }
    }
}
