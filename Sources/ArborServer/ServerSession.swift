import ArborEngine
import ArborHost
import ArborModels
import Foundation

/// One client's target state: a `LocalVerifier` (its own KV cache) kept in step with the
/// client's accepted path. Its model work runs only on the `TargetHost` thread; `cancel()` may
/// be called from anywhere and makes queued work skip.
final class ServerSession: HostedSession, @unchecked Sendable {
    let id: UInt32
    let setup: SessionSetup
    let metrics: ServerMetrics
    /// The target model this session uses.
    let host: TargetHost
    private let lock = NSLock()
    private var cancelled = false
    /// Model thread only.
    private var verifier: LocalVerifier?

    init(id: UInt32, setup: SessionSetup, metrics: ServerMetrics, host: TargetHost) {
        self.host = host
        self.id = id
        self.setup = setup
        self.metrics = metrics
    }

    private var roundCount = 0

    var isCancelled: Bool { lock.withLock { cancelled } }
    /// Rounds served (verify and decode passes), for the session's closing log line.
    var rounds: Int { lock.withLock { roundCount } }
    func countRound() { lock.withLock { roundCount += 1 } }
    func cancel() { lock.withLock { cancelled = true } }

    /// Reads the prompt (model thread); `meter` measures the session's target passes. Returns the
    /// compute time.
    func prefill(_ prompt: [Int32], model: any LanguageModel, meter: EnergyMeter) throws -> Double {
        guard !isCancelled else { throw HostError.sessionCancelled }
        let start = DispatchTime.now().uptimeNanoseconds
        if verifier == nil { metrics.cacheAllocated() }
        let v = LocalVerifier(model: model)
        v.meter = meter
        verifier = v
        try v.begin(VerificationRequest(prompt: prompt, sampling: setup.sampling, suppressedTokens: setup.suppressedTokens,
                                        capacity: setup.capacity))
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// The session's verifier, ready for a round (model thread).
    func activeVerifier() throws -> LocalVerifier {
        guard !isCancelled else { throw HostError.sessionCancelled }
        guard let verifier else { throw SpeculativeError.notStarted }
        return verifier
    }

    /// Frees the KV cache (model thread). Safe to call more than once.
    func release() {
        guard let v = verifier else { return }
        v.end()
        verifier = nil
        metrics.cacheReleased()
    }
}

/// What a client asked for when opening a session (validated).
struct SessionSetup: Sendable, Equatable {
    var sampling: SamplingParameters
    var capacity: Int
    var suppressedTokens: [Int32]
}
