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
    /// Server-side speculation in this session's run-ahead rounds (nil: plain passes).
    let drafting: DecodeDrafting?
    private let lock = NSLock()
    private var cancelled = false
    /// Model thread only.
    private var verifier: LocalVerifier?
    /// The drafter of run-ahead rounds and its policy, made at the first one (model thread only).
    private var speculator: RunAheadSpeculator?

    init(id: UInt32, setup: SessionSetup, metrics: ServerMetrics, host: TargetHost, drafting: DecodeDrafting? = nil) {
        self.host = host
        self.drafting = drafting
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
        endSpeculation()
        let v = LocalVerifier(model: model)
        v.meter = meter
        verifier = v
        try v.begin(VerificationRequest(prompt: prompt, sampling: setup.sampling, suppressedTokens: setup.suppressedTokens,
                                        capacity: setup.capacity))
        if let drafting {
            // The server's drafter reads the prompt with the target, as a client's drafter does
            // with its prefill: run-ahead rounds then pay only for drafting. A drafter that cannot
            // (a prompt beyond a draft model's context, say) leaves this request's run-ahead
            // rounds to plain passes: the session itself is fine.
            do {
                let s = try drafting.makeSpeculator()
                try s.begin(prompt: prompt, sampling: setup.sampling, meter: meter)
                speculator = s
            } catch {
                speculator = nil
            }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// The session's verifier, ready for a round (model thread).
    func activeVerifier() throws -> LocalVerifier {
        guard !isCancelled else { throw HostError.sessionCancelled }
        guard let verifier else { throw SpeculativeError.notStarted }
        return verifier
    }

    /// One round of server-side speculation within a run-ahead (model thread; the session has
    /// `drafting`): commits between 1 and `remaining` tokens on the session's verifier.
    /// Without a drafter for this request (none configured, or it could not read the prompt), a
    /// plain pass.
    func speculate(remaining: Int, meter: EnergyMeter) throws -> RunAheadSpeculator.Round {
        let v = try activeVerifier()
        guard let speculator else {
            let r = try v.verify(TokenTree())
            return RunAheadSpeculator.Round(tokens: [r.nextToken], result: r, draft: DraftCost())
        }
        // Cache slots a pass may use beyond the pending token (the cache holds all committed tokens but it).
        let room = min(setup.capacity, v.contextLength) - v.committed.count
        return try speculator.round(verifier: v, sampling: setup.sampling, remaining: remaining, room: room, meter: meter)
    }

    /// Drops the last `count` committed tokens of the session (model thread): a speculative
    /// round's tokens after an end-of-generation token, which are never sent.
    func discardLast(_ count: Int) {
        guard count > 0, let v = verifier else { return }
        v.rollBack(toCommitted: v.committed.count - count)
    }

    /// Ends the drafter's request and keeps what its policy learned (model thread).
    private func endSpeculation() {
        guard let s = speculator else { return }
        s.end(context: verifier?.committed ?? [])
        drafting?.learn(from: s)
        speculator = nil
    }

    /// Frees the KV cache (model thread). Safe to call more than once.
    func release() {
        endSpeculation()
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
