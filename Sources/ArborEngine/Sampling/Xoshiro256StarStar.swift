/// xoshiro256** 1.0 (Blackman & Vigna), seeded through splitmix64.
///
/// A small, fast, reproducible generator: its output depends only on the seed and the number
/// of values drawn, never on the platform, the standard library version or the process,
/// because it uses nothing but 64-bit wrapping integer arithmetic. It is **not**
/// cryptographically secure.
///
/// It is a value type: copying it forks the stream (both copies produce the same values).
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable, Hashable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// Seeds the 256-bit state with four consecutive outputs of splitmix64 started at `seed`,
    /// as recommended by the xoshiro authors. Every seed (including 0) gives a valid,
    /// non-zero state.
    public init(seed: UInt64) {
        var sm = seed
        s0 = Self.splitMix64(&sm)
        s1 = Self.splitMix64(&sm)
        s2 = Self.splitMix64(&sm)
        s3 = Self.splitMix64(&sm)
    }

    /// Starts from an explicit 256-bit state (for reference test vectors); the state must not
    /// be all zero.
    public init(state: (UInt64, UInt64, UInt64, UInt64)) {
        precondition(state != (0, 0, 0, 0), "xoshiro256** state must not be all zero")
        (s0, s1, s2, s3) = state
    }

    /// One step of splitmix64: advances `state` by the golden gamma and returns the mixed value.
    @inlinable
    public static func splitMix64(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Returns the next 64 uniformly distributed bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// Returns a uniformly distributed `Double` in [0, 1) built from the top 53 bits of
    /// ``next()`` (every representable multiple of 2⁻⁵³ is equally likely).
    @inline(__always)
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    @inline(__always)
    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 &- k))
    }
}
