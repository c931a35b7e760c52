import ArborEngine
import ArborKernels

/// Memory read bandwidth, measured the way a decoding step uses memory: stream through a
/// buffer much larger than the last-level cache once per pass, every thread reading its own
/// chunks, summing the floats with SIMD so the reads cannot be optimised away.
public final class BandwidthBenchmark {
    public let bytes: Int
    public let threads: Int
    private let floats: Int
    private let buffer: UnsafeMutableRawPointer
    private let pool: ThreadPool
    /// Chunks handed out dynamically (a busy core takes fewer).
    private let chunkCount: Int
    private let partials: UnsafeMutablePointer<Double>

    /// Allocates `bytes` (rounded down to 16 MiB chunks, at least one) and fills it with 1.0,
    /// which also faults every page in before anything is timed.
    public init(bytes requested: Int, threads: Int) {
        let chunk = 16 << 20
        chunkCount = max(1, requested / chunk)
        bytes = chunkCount * chunk
        floats = bytes / MemoryLayout<Float>.stride
        self.threads = max(1, threads)
        pool = ThreadPool(threads: self.threads)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        partials = .allocate(capacity: chunkCount)
        let perChunk = floats / chunkCount
        let base = buffer.bindMemory(to: Float.self, capacity: floats)
        pool.parallelFor(chunkCount) { c in
            (base + c * perChunk).initialize(repeating: 1, count: perChunk)
        }
    }

    deinit {
        buffer.deallocate()
        partials.deallocate()
    }

    /// One pass over the whole buffer; returns the elapsed milliseconds. Checks the sum (every
    /// float is 1, so it must equal the float count: partial sums stay below 2^24 per lane).
    public func pass() -> Double {
        let perChunk = floats / chunkCount
        let buffer = UnsafeRawPointer(self.buffer), partials = self.partials
        let start = MonotonicClock.now
        pool.parallelFor(chunkCount) { c in
            partials[c] = Self.sum(buffer + c * perChunk * 4, count: perChunk)
        }
        let ms = MonotonicClock.millisecondsSince(start)
        var total = 0.0
        for c in 0..<chunkCount { total += partials[c] }
        precondition(total == Double(floats), "bandwidth: sum \(total) != \(floats)")
        return ms
    }

    /// GB/s (10^9 bytes per second) of a pass that took `ms`.
    public func gigabytesPerSecond(ms: Double) -> Double {
        ms > 0 ? Double(bytes) / (ms / 1000) / 1e9 : 0
    }

    /// Sum of `count` floats (a multiple of 32) at 32-byte-aligned `p`: four independent
    /// 8-lane accumulators, so the loop is bound by loads, not by add latency.
    @inline(never)
    static func sum(_ p: UnsafeRawPointer, count: Int) -> Double {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var offset = 0
        let end = count * 4
        while offset < end {
            a0 += p.load(fromByteOffset: offset, as: SIMD8<Float>.self)
            a1 += p.load(fromByteOffset: offset + 32, as: SIMD8<Float>.self)
            a2 += p.load(fromByteOffset: offset + 64, as: SIMD8<Float>.self)
            a3 += p.load(fromByteOffset: offset + 96, as: SIMD8<Float>.self)
            offset += 128
        }
        let s = (a0 + a1) + (a2 + a3)
        var total = 0.0
        for i in 0..<8 { total += Double(s[i]) }
        return total
    }
}
