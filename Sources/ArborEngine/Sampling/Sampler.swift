/// Turns a logit vector into a token id, and exposes the exact distribution it draws from.
///
/// A sampler is a value owned by one generation loop; its methods are `mutating` because it
/// keeps a random number generator and reusable scratch buffers.
///
/// Contract, relied on by the speculative verifier:
/// - ``probabilities(logits:history:into:)`` writes the *final* distribution over the whole
///   vocabulary after every transform (penalties, filters, temperature); filtered-out tokens
///   get exactly `0`. It does not consume randomness.
/// - ``sample(logits:history:)`` draws from exactly that distribution.
/// - ``sample(from:)`` draws from an arbitrary caller-supplied distribution (for example the
///   residual `max(0, p - q)` after a rejected draft token) with the same generator.
/// - ``nextUniform()`` exposes the generator for accept/reject decisions, so a whole
///   speculative run is reproducible from one seed.
public protocol Sampler {
    /// Picks the next token from raw `logits` (one per vocabulary entry, indexed by token id),
    /// given the already generated/consumed `history` (oldest first). Does not modify `logits`.
    mutating func sample(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> Int32

    /// Writes the final sampling distribution for `logits` into `output` (same count as
    /// `logits`): non-negative, summing to 1 (up to rounding), exactly 0 for filtered tokens.
    mutating func probabilities(
        logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>,
        into output: UnsafeMutableBufferPointer<Float>
    )

    /// Returns the final sampling distribution for `logits` as a new array over the whole
    /// vocabulary. Does not change the sampler's state (in particular, not its generator).
    func probabilities(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> [Float]

    /// Draws a token id from `probabilities` (non-negative weights indexed by token id; they
    /// need not be normalised). Entries that are not strictly positive are never chosen.
    mutating func sample(from probabilities: UnsafeBufferPointer<Float>) -> Int32

    /// Returns the next uniform variate in [0, 1) from the sampler's generator.
    mutating func nextUniform() -> Double
}

extension Sampler {
    /// Default: copies the sampler and asks the copy, leaving `self` untouched.
    public func probabilities(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> [Float] {
        var copy = self
        return [Float](unsafeUninitializedCapacity: logits.count) { buffer, initialized in
            copy.probabilities(logits: logits, history: history, into: buffer)
            initialized = logits.count
        }
    }

    /// Default: inverse-CDF draw with ``CategoricalDraw`` and ``nextUniform()``.
    public mutating func sample(from probabilities: UnsafeBufferPointer<Float>) -> Int32 {
        Int32(truncatingIfNeeded: CategoricalDraw.draw(probabilities) { nextUniform() })
    }

    /// Array convenience for ``sample(logits:history:)``.
    public mutating func sample(logits: [Float], history: some Collection<Int32>) -> Int32 {
        logits.withUnsafeBufferPointer { sample(logits: $0, history: history) }
    }

    /// Mutable-buffer convenience for ``sample(logits:history:)``; `logits` is not modified.
    public mutating func sample(logits: UnsafeMutableBufferPointer<Float>, history: some Collection<Int32>) -> Int32 {
        sample(logits: UnsafeBufferPointer(logits), history: history)
    }

    /// Array convenience for ``probabilities(logits:history:)``.
    public func probabilities(logits: [Float], history: some Collection<Int32>) -> [Float] {
        logits.withUnsafeBufferPointer { probabilities(logits: $0, history: history) }
    }

    /// Array convenience for ``probabilities(logits:history:into:)``; `output` is resized to
    /// the vocabulary size if needed (no allocation when it already has that size).
    public mutating func probabilities(logits: [Float], history: some Collection<Int32>, into output: inout [Float]) {
        if output.count != logits.count { output = [Float](repeating: 0, count: logits.count) }
        logits.withUnsafeBufferPointer { l in
            output.withUnsafeMutableBufferPointer { o in
                probabilities(logits: l, history: history, into: o)
            }
        }
    }

    /// Array convenience for ``sample(from:)``.
    public mutating func sample(from probabilities: [Float]) -> Int32 {
        probabilities.withUnsafeBufferPointer { sample(from: $0) }
    }
}

/// The inverse-CDF categorical draw shared by every sampler, so that drawing from a compact
/// candidate list and drawing from the equivalent full-vocabulary vector give the *same*
/// token for the same generator state.
///
/// Rules: only strictly positive weights count; weights are accumulated in `Double` in index
/// order; with `u` uniform in [0, 1), the chosen index is the first whose running sum exceeds
/// `u · total`. When at most one weight is positive no variate is consumed (the result is
/// that index, or the index of the largest weight — lowest on ties — when none is positive).
public enum CategoricalDraw {
    /// Draws an index of `weights`, calling `uniform` at most once.
    public static func draw(_ weights: UnsafeBufferPointer<Float>, uniform: () -> Double) -> Int {
        precondition(!weights.isEmpty, "cannot sample from an empty distribution")
        return draw(count: weights.count, weight: { weights[$0] }, uniform: uniform)
    }

    /// The same draw over `count` weights read through `weight(i)`.
    @inline(__always)
    static func draw(count: Int, weight: (Int) -> Float, uniform: () -> Double) -> Int {
        var total = 0.0
        var positive = 0
        var last = 0
        for i in 0..<count {
            let w = weight(i)
            if w > 0 {
                total += Double(w)
                positive &+= 1
                last = i
            }
        }
        if positive == 1 { return last }
        if positive == 0 {
            // Degenerate input: fall back to the largest weight, lowest index on ties.
            var best = 0
            var bestValue = -Float.infinity
            for i in 0..<count where weight(i) > bestValue {
                best = i
                bestValue = weight(i)
            }
            return best
        }
        let target = uniform() * total
        var cumulative = 0.0
        for i in 0..<count {
            let w = weight(i)
            if w > 0 {
                cumulative += Double(w)
                if cumulative > target { return i }
            }
        }
        return last
    }
}
