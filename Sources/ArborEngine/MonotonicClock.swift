#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Arbor's one wall clock (`CLOCK_MONOTONIC`, nanoseconds): generation statistics, drafting
/// and verification costs, and every benchmark read it, so their numbers add up.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot).
    public static var now: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Milliseconds elapsed since `start` (a value of `now`).
    public static func millisecondsSince(_ start: UInt64) -> Double { Double(now &- start) / 1e6 }

    /// Runs `body` and returns its result with the elapsed milliseconds.
    public static func measure<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> (value: T, ms: Double) {
        let start = now
        let value = try body()
        return (value, millisecondsSince(start))
    }
}
