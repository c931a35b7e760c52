import ArborEngine
import ArborHost
import Foundation

/// A `Verifier` whose target passes run on a shared `TargetHost`: its own KV cache there, its
/// rounds queued in arrival order with every other user's and merged into their passes. What
/// lets several generations on one model run at once (`arbor api`), each verdict exactly the one
/// a `LocalVerifier` of its own would give.
final class HostedVerifier: Verifier, HostedSession, @unchecked Sendable {
    let host: TargetHost
    /// Host thread only.
    private var verifier: LocalVerifier?

    init(host: TargetHost) {
        self.host = host
    }

    var vocabularySize: Int { host.info.vocabularySize }
    var contextLength: Int { host.info.contextLength }

    /// The session's verifier on the host thread (`HostedSession`).
    func activeVerifier() throws -> LocalVerifier {
        guard let verifier else { throw SpeculativeError.notStarted }
        return verifier
    }

    func begin(_ request: VerificationRequest) throws {
        let meter = host.meter
        try wait { done in
            host.submit { [self] model, _ in
                done(model.flatMap { m in
                    Result {
                        verifier?.end()
                        let v = LocalVerifier(model: m)
                        v.meter = meter
                        try v.begin(request)
                        verifier = v
                    }
                })
            }
        }
    }

    func verify(_ tree: TokenTree) throws -> VerificationResult {
        try wait { done in
            host.submitVerify(self, tree) { outcome, queueMilliseconds in
                done(outcome.map { r in
                    var r = r
                    r.cost.queueMilliseconds = queueMilliseconds
                    return r
                })
            }
        }
    }

    /// Frees the KV cache on the host thread (not waited for).
    func end() {
        host.submit { [self] _, _ in
            verifier?.end()
            verifier = nil
        }
    }

    /// Blocks this (the generation's) thread until the host has done the job.
    private func wait<T>(_ submit: (@escaping @Sendable (Result<T, any Error>) -> Void) -> Void) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        submit { result in
            box.value = result
            done.signal()
        }
        done.wait()  // The semaphore orders the write before this read.
        return try box.value!.get()
    }
}

/// A result handed from the host thread to a waiting one (the semaphore orders the accesses).
private final class ResultBox<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}
