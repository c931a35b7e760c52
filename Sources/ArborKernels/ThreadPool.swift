import CArborKernels

/// Persistent worker threads for data-parallel loops (a fork-join pool).
///
/// `threads` counts the calling thread, which takes part in every loop: `ThreadPool(threads: 2)`
/// starts one worker. Idle workers spin briefly (`spinMicroseconds`), then sleep on a condition
/// variable, so the pool does not burn cores it shares with other processes.
///
/// One loop runs at a time: concurrent `parallelFor` calls are serialised, and a `parallelFor`
/// from inside a loop body runs serially on the calling thread.
public final class ThreadPool: @unchecked Sendable {
    private let handle: OpaquePointer
    /// Threads taking part in a loop, the caller included.
    public let threads: Int

    public init(threads: Int, spinMicroseconds: Int = 50) {
        guard let h = arbor_pool_create(Int32(clamping: max(1, threads)), Int64(max(0, spinMicroseconds)) * 1000) else {
            fatalError("ThreadPool: out of memory")
        }
        handle = h
        self.threads = Int(arbor_pool_threads(h))
    }

    deinit { arbor_pool_destroy(handle) }

    /// Calls `body(i)` for every `i` in `0..<n`, spread over the threads (in no particular order),
    /// and returns when all calls have finished. `body` runs concurrently with itself: what it
    /// writes must be disjoint per index.
    public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
        guard n > 0 else { return }
        if n == 1 || threads == 1 {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var closure = body
            withUnsafeMutablePointer(to: &closure) { ptr in
                arbor_pool_run(handle, Int64(n), { ctx, i in
                    ctx.unsafelyUnwrapped.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                }, ptr)
            }
        }
    }

    /// Splits `0..<n` into contiguous ranges of at least `grain` indices (about 4 per thread)
    /// and calls `body` on each range, in parallel.
    public func parallelFor(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        guard n > 0 else { return }
        let chunk = max(max(1, grain), (n + threads * 4 - 1) / (threads * 4))
        let chunks = (n + chunk - 1) / chunk
        parallelFor(chunks) { c in
            body((c * chunk)..<min(n, (c + 1) * chunk))
        }
    }
}
