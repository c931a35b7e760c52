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
}

/// Owns the target model and runs all work on it, one job at a time, on its own thread.
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

    /// Server-wide counters (read from any thread).
    public let metrics = ServerMetrics()

    struct Job {
        let enqueued: UInt64
        let run: (Result<any LanguageModel, any Error>, _ queueMilliseconds: Double) -> Void
    }

    /// Reads the file's metadata and tokenizer (cheap: the file is memory-mapped); builds the
    /// model now unless `lazy`.
    public init(path: String, threads: Int, lazy: Bool) throws {
        self.path = path
        self.threads = threads
        let file = try GGUFFile(path: path)
        let tokenizer = try makeTokenizer(file)
        let configuration = try ModelConfiguration(file: file)
        info = TargetInfo(vocabularyHash: tokenizer.vocabularyFingerprint, vocabularySize: configuration.vocabularySize,
                          contextLength: configuration.contextLength)
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

    /// Queues `work` to run on the model's thread; it receives the model (or why there is none)
    /// and how long it waited in the queue.
    func submit(_ work: @escaping (Result<any LanguageModel, any Error>, Double) -> Void) {
        condition.lock()
        if stopping {
            condition.unlock()
            work(.failure(ServerError.shuttingDown), 0)
            return
        }
        jobs.append(Job(enqueued: DispatchTime.now().uptimeNanoseconds, run: work))
        condition.signal()
        condition.unlock()
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
            let job = jobs[head]
            head += 1
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            let waited = Double(DispatchTime.now().uptimeNanoseconds &- job.enqueued) / 1e6
            job.run(loadedModel(), waited)
        }
        model = nil
        stoppedSemaphore.signal()
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

/// Server-wide counters, safe to read from any thread.
public final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var _connections = 0
    private var _sessions = 0
    private var _reservedTokens = 0
    private var _liveCaches = 0
    private var _rounds = 0
    private var _busyMilliseconds = 0.0

    /// Open connections.
    public var connections: Int { lock.withLock { _connections } }
    /// Open sessions (connections past hello holding a session).
    public var sessions: Int { lock.withLock { _sessions } }
    /// Tokens of KV cache capacity reserved by open sessions.
    public var reservedTokens: Int { lock.withLock { _reservedTokens } }
    /// Sessions whose KV cache is allocated on the model thread.
    public var liveCaches: Int { lock.withLock { _liveCaches } }
    /// Verify rounds served.
    public var rounds: Int { lock.withLock { _rounds } }
    /// Model thread time spent on requests.
    public var busyMilliseconds: Double { lock.withLock { _busyMilliseconds } }

    func connectionOpened() { lock.withLock { _connections += 1 } }
    func connectionClosed() { lock.withLock { _connections -= 1 } }
    func sessionOpened(tokens: Int) { lock.withLock { _sessions += 1; _reservedTokens += tokens } }
    func sessionClosed(tokens: Int) { lock.withLock { _sessions -= 1; _reservedTokens -= tokens } }
    func cacheAllocated() { lock.withLock { _liveCaches += 1 } }
    func cacheReleased() { lock.withLock { _liveCaches -= 1 } }
    func roundServed(milliseconds: Double) { lock.withLock { _rounds += 1; _busyMilliseconds += milliseconds } }
    func busy(milliseconds: Double) { lock.withLock { _busyMilliseconds += milliseconds } }
}

/// Errors of the server itself.
public enum ServerError: Error, CustomStringConvertible {
    case shuttingDown
    case sessionCancelled
    case bind(host: String, port: Int, underlying: any Error)

    public var description: String {
        switch self {
        case .shuttingDown: "the server is shutting down"
        case .sessionCancelled: "the session was closed"
        case let .bind(host, port, e): "cannot listen on \(host):\(port): \(e)"
        }
    }
}
