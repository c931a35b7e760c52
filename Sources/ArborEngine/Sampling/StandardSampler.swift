#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The standard sampling pipeline, in llama.cpp's default chain order:
///
/// 1. **repetition penalty** — for every distinct token among the last
///    ``SamplingParameters/repetitionLastN`` history tokens, a positive logit is divided by
///    the penalty and a non-positive one multiplied by it;
/// 2. if ``SamplingParameters/temperature`` is 0: **greedy** — the argmax, lowest id on ties
///    (the distribution is one-hot; no randomness is consumed);
/// 3. **top-k** — keep the `k` largest logits (lowest id wins ties at the boundary);
/// 4. **top-p** — softmax (at temperature 1) over the survivors, keep the smallest
///    most-likely-first prefix whose cumulative probability is ≥ `topP` (at least one token);
/// 5. **min-p** — keep tokens with `logit ≥ maxLogit + log(minP)`, i.e. probability at
///    temperature 1 of at least `minP` times the largest (the top token always survives);
/// 6. **temperature** — divide the surviving logits by `T`, softmax;
/// 7. **draw** — inverse CDF with ``CategoricalDraw`` over the survivors in token-id order,
///    using one ``Xoshiro256StarStar/nextDouble()`` (none when a single token has mass).
///
/// Step 7 is exactly ``Sampler/sample(from:)`` applied to ``probabilities(logits:history:into:)``:
/// for the same generator state both give the same token.
///
/// Performance (V = vocabulary size): nothing is allocated per call once the scratch
/// buffers have grown to V (≈ 13 bytes × V per sampler). Full-vocabulary passes (max, exp,
/// the final softmax) are 8-wide SIMD. Top-k uses heap selection, O(V log k), and sorts only
/// the k survivors. Top-p without top-k never sorts the vocabulary: one pass builds a
/// probability-mass histogram over 1/16-nat logit buckets below the maximum, which locates
/// the bucket where the cumulative mass crosses `topP`; only that bucket's tokens are sorted,
/// and the survivors are then selected by a threshold test. Min-p alone is a threshold test.
/// Measured on the 2-core dev box (release, V = 262,144): greedy ≈ 0.02 ms, llama.cpp
/// defaults (top-k 40) ≈ 0.1 ms, min-p or no filter ≈ 0.2 ms for `probabilities` and
/// ≈ 0.6 ms for `sample` (the draw scans the dense vector), top-p only ≈ 1–2 ms.
///
/// Numerics: the vectorised exponential flushes results below e⁻⁸⁷ (relative to the top
/// token) to 0. Logits should not be NaN; NaN entries get probability 0. If no logit is
/// finite at the top (all `-inf`, or a `+inf` present) the sampler falls back to the argmax.
///
/// Differences from llama.cpp, all at exact floating-point boundaries only: cumulative sums
/// are accumulated in `Double` (llama.cpp: `Float`), and ties in logit are broken by lower id
/// (llama.cpp: unspecified sort order).
public struct StandardSampler: Sampler, Sendable {
    /// The validated parameters this sampler applies.
    public let parameters: SamplingParameters
    /// The generator used for draws; starts from ``SamplingParameters/seed``. Assign to it to
    /// fork or restore a stream.
    public var rng: Xoshiro256StarStar

    // Scratch buffers, grown to the vocabulary size on first use and then reused.
    private var penalized: [Float] = []
    private var work: [Float] = []
    private var candidates: [SamplingCandidate] = []
    private var bucketMass: [Double] = []
    private var historyScratch: [Int32] = []

    /// Creates a sampler after validating `parameters`.
    ///
    /// - Throws: ``SamplingParametersError`` when a parameter is out of range.
    public init(parameters: SamplingParameters) throws(SamplingParametersError) {
        try parameters.validate()
        self.parameters = parameters
        self.rng = Xoshiro256StarStar(seed: parameters.seed)
    }

    private init(validated parameters: SamplingParameters, rng: Xoshiro256StarStar) {
        self.parameters = parameters
        self.rng = rng
    }

    /// Restarts the generator from ``SamplingParameters/seed``.
    public mutating func reset() {
        rng = Xoshiro256StarStar(seed: parameters.seed)
    }

    /// Returns the next uniform variate in [0, 1) from ``rng``.
    public mutating func nextUniform() -> Double {
        rng.nextDouble()
    }

    /// Runs the pipeline on `logits` and draws a token id. `logits` is not modified.
    public mutating func sample(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> Int32 {
        withPenaltyWindow(history) { sampler, window in sampler.sample(logits, window) }
    }

    /// Writes the final distribution (zeros for filtered tokens) into `output`, which must
    /// have `logits.count` elements. Consumes no randomness and allocates nothing once warm.
    public mutating func probabilities(
        logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>,
        into output: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(output.count == logits.count, "output must have one entry per logit")
        withPenaltyWindow(history) { sampler, window in sampler.probabilities(logits, window, output) }
    }

    /// Returns the final distribution as a new array, leaving `self` (generator and scratch
    /// buffers) untouched; uses temporary buffers, so prefer
    /// ``probabilities(logits:history:into:)`` in hot loops.
    public func probabilities(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> [Float] {
        var scratch = StandardSampler(validated: parameters, rng: rng)
        return [Float](unsafeUninitializedCapacity: logits.count) { buffer, initialized in
            scratch.probabilities(logits: logits, history: history, into: buffer)
            initialized = logits.count
        }
    }

    // MARK: - History

    /// Calls `body` with the penalised part of `history` (its last `repetitionLastN` tokens,
    /// or nothing when the penalty is off) as a contiguous buffer, copying only when the
    /// collection has no contiguous storage.
    private mutating func withPenaltyWindow<R>(
        _ history: some Collection<Int32>, _ body: (inout StandardSampler, UnsafeBufferPointer<Int32>) -> R
    ) -> R {
        let n = parameters.hasRepetitionPenalty ? parameters.repetitionLastN : 0
        if n == 0 || history.isEmpty {
            return body(&self, UnsafeBufferPointer(start: nil, count: 0))
        }
        if let result = history.withContiguousStorageIfAvailable({ buffer in
            body(&self, UnsafeBufferPointer(rebasing: buffer.suffix(n)))
        }) {
            return result
        }
        var scratch: [Int32] = []
        swap(&scratch, &historyScratch)
        defer { swap(&scratch, &historyScratch) }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: history.suffix(n))
        return scratch.withUnsafeBufferPointer { body(&self, $0) }
    }

    // MARK: - Pipeline

    /// What survives the filters.
    private enum Plan {
        /// One token with probability 1 (greedy, or degenerate logits).
        case single(Int)
        /// `candidates[0..<n]` hold (probability, id) in ascending id order.
        case sparse(Int)
        /// The distribution is computed over the whole vocabulary with this rule.
        case dense(SamplingKernels.KeepRule)
    }

    private mutating func sample(_ logits: UnsafeBufferPointer<Float>, _ window: UnsafeBufferPointer<Int32>) -> Int32 {
        var generator = rng
        let token = withPlan(logits, window) { plan, l, c, work in
            switch plan {
            case .single(let t):
                return Int32(truncatingIfNeeded: t)
            case .sparse(let n):
                let i = CategoricalDraw.draw(count: n, weight: { c[$0].value }, uniform: { generator.nextDouble() })
                return c[i].id
            case .dense(let rule):
                let dense = UnsafeMutableBufferPointer(rebasing: work[0..<l.count])
                SamplingKernels.fillDense(l, rule, into: dense)
                let i = CategoricalDraw.draw(UnsafeBufferPointer(dense), uniform: { generator.nextDouble() })
                return Int32(truncatingIfNeeded: i)
            }
        }
        rng = generator
        return token
    }

    private mutating func probabilities(
        _ logits: UnsafeBufferPointer<Float>, _ window: UnsafeBufferPointer<Int32>,
        _ output: UnsafeMutableBufferPointer<Float>
    ) {
        withPlan(logits, window) { plan, l, c, _ in
            switch plan {
            case .single(let t):
                output.update(repeating: 0)
                output[t] = 1
            case .sparse(let n):
                output.update(repeating: 0)
                for i in 0..<n { output[Int(c[i].id)] = c[i].value }
            case .dense(let rule):
                SamplingKernels.fillDense(l, rule, into: output)
            }
        }
    }

    /// Applies the penalty (into scratch, never into `logits`), plans the filters and hands
    /// the plan, the effective logits and the scratch buffers to `body`.
    private mutating func withPlan<R>(
        _ logits: UnsafeBufferPointer<Float>, _ window: UnsafeBufferPointer<Int32>,
        _ body: (Plan, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<SamplingCandidate>,
                 UnsafeMutableBufferPointer<Float>) -> R
    ) -> R {
        let v = logits.count
        precondition(v > 0, "cannot sample from an empty vocabulary")
        precondition(v < Int(Int32.max), "vocabulary too large for Int32 token ids")
        // Move the scratch arrays out of `self` for the duration (no copy, no allocation).
        var pen: [Float] = []
        var cand: [SamplingCandidate] = []
        var wrk: [Float] = []
        var mass: [Double] = []
        swap(&pen, &penalized)
        swap(&cand, &candidates)
        swap(&wrk, &work)
        swap(&mass, &bucketMass)
        defer {
            swap(&pen, &penalized)
            swap(&cand, &candidates)
            swap(&wrk, &work)
            swap(&mass, &bucketMass)
        }
        if cand.count < v { cand = [SamplingCandidate](repeating: SamplingCandidate(), count: v) }
        if wrk.count < v { wrk = [Float](repeating: 0, count: v) }
        if mass.count < Self.bucketCount + 1 { mass = [Double](repeating: 0, count: Self.bucketCount + 1) }
        if !window.isEmpty && pen.count < v { pen = [Float](repeating: 0, count: v) }
        let params = parameters

        return wrk.withUnsafeMutableBufferPointer { w in
            cand.withUnsafeMutableBufferPointer { c in
                mass.withUnsafeMutableBufferPointer { m in
                    if window.isEmpty {
                        return body(Self.plan(logits, c, w, m, params), logits, c, w)
                    }
                    return pen.withUnsafeMutableBufferPointer { whole in
                        let adjusted = UnsafeMutableBufferPointer(rebasing: whole[0..<v])
                        adjusted.baseAddress!.update(from: logits.baseAddress!, count: v)
                        let penalty = params.repetitionPenalty
                        // Recomputing from the original logit makes repeats idempotent, so each
                        // distinct token is penalised exactly once without deduplication.
                        for token in window {
                            let i = Int(token)
                            guard i >= 0, i < v else { continue }
                            let x = logits[i]
                            adjusted[i] = x > 0 ? x / penalty : x * penalty
                        }
                        let l = UnsafeBufferPointer(adjusted)
                        return body(Self.plan(l, c, w, m, params), l, c, w)
                    }
                }
            }
        }
    }

    /// Greedy, or top-k → top-p → min-p (temperature is applied when the plan is executed).
    private static func plan(
        _ logits: UnsafeBufferPointer<Float>, _ c: UnsafeMutableBufferPointer<SamplingCandidate>,
        _ work: UnsafeMutableBufferPointer<Float>, _ mass: UnsafeMutableBufferPointer<Double>,
        _ p: SamplingParameters
    ) -> Plan {
        let v = logits.count
        let (maxLogit, argmax) = SamplingKernels.maxAndArgmax(logits)
        if p.temperature == 0 || !maxLogit.isFinite { return .single(argmax) }

        // Min-p threshold on the temperature-1 logits, as llama.cpp computes it.
        let minCut: Float = p.minP > 0 ? maxLogit + logf(p.minP) : -.infinity

        if p.topK > 0 && p.topK < v {
            return .sparse(topKCandidates(logits, maxLogit: maxLogit, minCut: minCut, c, p))
        }
        if p.topP < 1 {
            let boundary = nucleusBoundary(logits, maxLogit: maxLogit, minCut: minCut, topP: p.topP, c, work, mass)
            return .dense(SamplingKernels.KeepRule(
                boundaryValue: boundary.value, boundaryIndex: boundary.index, minCut: minCut,
                maxLogit: maxLogit, temperature: p.temperature))
        }
        return .dense(.all(minCut: minCut, maxLogit: maxLogit, temperature: p.temperature))
    }

    /// Top-k by heap selection, then top-p and min-p on the sorted survivors, then
    /// temperature softmax. Leaves (probability, id) in ascending id order; returns the count.
    private static func topKCandidates(
        _ logits: UnsafeBufferPointer<Float>, maxLogit: Float, minCut: Float,
        _ c: UnsafeMutableBufferPointer<SamplingCandidate>, _ p: SamplingParameters
    ) -> Int {
        let k = p.topK
        CandidateOrder.selectTopK(logits, k, into: c)
        var n = k
        if p.topP < 1 {
            var z = 0.0
            for i in 0..<k { z += Double(expf(c[i].value - maxLogit)) }
            let target = Double(p.topP)
            var cumulative = 0.0
            for i in 0..<k {
                cumulative += Double(expf(c[i].value - maxLogit))
                if cumulative / z >= target {
                    n = i + 1
                    break
                }
            }
        }
        if p.minP > 0 {
            var m = 1
            while m < n && c[m].value >= minCut { m += 1 }
            n = m
        }
        var sum = 0.0
        for i in 0..<n {
            let w = expf((c[i].value - maxLogit) / p.temperature)
            c[i].value = w
            sum += Double(w)
        }
        // The maximum survives every filter and contributes exp(0) = 1, so sum ≥ 1.
        for i in 0..<n { c[i].value = Float(Double(c[i].value) / sum) }
        CandidateOrder.sort(c, 0, n, by: SamplingCandidate.idBefore)
        return n
    }

    // MARK: Top-p without top-k

    /// Histogram resolution for the nucleus search: buckets of 1/16 nat below the maximum
    /// logit, covering 32 nats; one extra bucket holds everything further down.
    private static let bucketsPerNat: Float = 16
    private static let bucketCount = 512

    @inline(__always)
    private static func bucket(_ x: Float, _ maxLogit: Float) -> Int {
        let d = maxLogit - x
        return d < Float(bucketCount) / bucketsPerNat ? Int(d * bucketsPerNat) : bucketCount
    }

    /// Finds the last token of the nucleus (smallest most-likely-first prefix with cumulative
    /// temperature-1 probability ≥ `topP`) without sorting the vocabulary: one exp pass builds
    /// a probability-mass histogram over logit buckets, which locates the bucket where the
    /// cumulative mass crosses `topP`; only that bucket's tokens are collected and sorted.
    /// Returns the boundary as (logit, id) under ``SamplingCandidate/ranksBefore(_:_:)``, or
    /// (-inf, Int32.max) for "keep everything".
    private static func nucleusBoundary(
        _ logits: UnsafeBufferPointer<Float>, maxLogit: Float, minCut: Float, topP: Float,
        _ c: UnsafeMutableBufferPointer<SamplingCandidate>, _ work: UnsafeMutableBufferPointer<Float>,
        _ mass: UnsafeMutableBufferPointer<Double>
    ) -> (value: Float, index: Int32) {
        let v = logits.count
        let everything: (value: Float, index: Int32) = (-.infinity, .max)
        let z = SamplingKernels.expShifted(logits, shift: maxLogit, into: work.baseAddress!)
        mass.update(repeating: 0)
        for i in 0..<v { mass[bucket(logits[i], maxLogit)] += Double(work[i]) }

        let target = Double(topP)
        var above = 0.0  // unnormalised mass of the buckets entirely inside the nucleus
        var b = 0
        while b < bucketCount && (above + mass[b]) / z < target {
            above += mass[b]
            b += 1
        }
        // If every token of the crossing bucket is below the min-p cut (with a margin for
        // rounding), min-p is the binding filter and the nucleus boundary does not matter.
        if b < bucketCount && minCut >= maxLogit - Float(b) / bucketsPerNat + 1.0 / 64 {
            return everything
        }
        // Sort the crossing bucket; continue into the next bucket only if rounding left the
        // cumulative sum just short of the target.
        while b <= bucketCount {
            var m = 0
            for i in 0..<v where bucket(logits[i], maxLogit) == b {
                c[m] = SamplingCandidate(value: logits[i], id: Int32(truncatingIfNeeded: i))
                m += 1
            }
            CandidateOrder.sort(c, 0, m, by: SamplingCandidate.ranksBefore)
            var cumulative = above
            for j in 0..<m {
                cumulative += Double(work[Int(c[j].id)])
                if cumulative / z >= target { return (c[j].value, c[j].id) }
            }
            above = cumulative
            b += 1
        }
        return everything
    }
}
