/// Vectorised full-vocabulary passes used by ``StandardSampler`` (8 floats per step; AVX2
/// with `-target-cpu native`). Tails are processed with the same vector code on a padded
/// register, so every element gets bit-identical treatment regardless of its position.
///
/// Note: in unoptimised (debug) builds generic SIMD code is orders of magnitude slower, so
/// hot scalar paths (the top-k softmax) use libm's `expf` instead of the scalar wrapper here.
enum SamplingKernels {
    typealias Vec = SIMD8<Float>
    typealias Mask = SIMDMask<SIMD8<Int32>>
    static let width = 8

    // MARK: exp

    /// Lowest argument whose exponential is computed; below it (and for NaN) the result is 0.
    static let expFloor: Float = -87.0

    /// eˣ per lane, Cephes-style: range reduction by ln 2 and a degree-6 polynomial;
    /// about 1 ulp of error on [-87, 88]. Arguments below -87, `-inf` and NaN give exactly 0,
    /// so masked (`-inf`) tokens always end with probability 0.
    ///
    /// Written with plain lane-wise arithmetic, comparisons and `replace(with:where:)` only:
    /// the generic SIMD helpers (`rounded`, `clamped`, conversions) compile to per-lane calls.
    @inline(__always)
    static func exp(_ x: Vec) -> Vec {
        let lo = Vec(repeating: expFloor)
        let hi = Vec(repeating: 88.0)
        var xc = x
        xc.replace(with: lo, where: x .< lo)
        xc.replace(with: hi, where: x .> hi)
        // Round x·log2(e) to the nearest integer n with the 1.5·2²³ trick: the sum's low
        // mantissa bits then hold n itself.
        let magic = Vec(repeating: 12_582_912.0)
        let t = xc * Vec(repeating: 1.442_695_040_888_963_4) + magic
        let n = t - magic
        let r = (xc - n * Vec(repeating: 0.693_359_375)) + n * Vec(repeating: 2.121_944_400_5e-4)
        let r2 = r * r
        var p = Vec(repeating: 1.987_569_150_0e-4)
        p = p * r + Vec(repeating: 1.398_199_950_7e-3)
        p = p * r + Vec(repeating: 8.333_451_907_3e-3)
        p = p * r + Vec(repeating: 4.166_579_589_4e-2)
        p = p * r + Vec(repeating: 1.666_666_545_9e-1)
        p = p * r + Vec(repeating: 5.000_000_120_1e-1)
        p = p * r2 + r + Vec(repeating: 1)
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 0x4B40_0000)
        let scale = unsafeBitCast((ni &+ SIMD8<Int32>(repeating: 127)) &* SIMD8<Int32>(repeating: 1 << 23), to: Vec.self)
        var y = p * scale
        y.replace(with: Vec(repeating: 0), where: .!(x .>= lo))
        return y
    }

    /// Scalar eˣ with exactly the vector kernel's results.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        exp(Vec(repeating: x))[0]
    }

    // MARK: loads and stores

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ i: Int) -> Vec {
        UnsafeRawPointer(p + i).loadUnaligned(as: Vec.self)
    }

    @inline(__always)
    static func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Vec.self)
    }

    /// Loads `count` (< 8) floats, padding with `fill`.
    @inline(__always)
    static func loadPartial(_ p: UnsafePointer<Float>, _ i: Int, _ count: Int, fill: Float) -> Vec {
        var v = Vec(repeating: fill)
        for j in 0..<count { v[j] = p[i + j] }
        return v
    }

    @inline(__always)
    static func storePartial(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ count: Int) {
        for j in 0..<count { p[i + j] = v[j] }
    }

    // MARK: passes

    /// The largest logit (NaN ignored) and the lowest index holding it. All-NaN input gives
    /// (-inf, 0).
   
    static func maxAndArgmax(_ l: UnsafeBufferPointer<Float>) -> (value: Float, index: Int) {
        let n = l.count
        let base = l.baseAddress!
        var best = Vec(repeating: -.infinity)
        var bestIndex = SIMD8<Int32>(repeating: 0)
        var index = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
        let step = SIMD8<Int32>(repeating: Int32(width))
        var i = 0
        while i + width <= n {
            let v = load(base, i)
            let better = v .> best  // strict: a lane keeps its first maximum; NaN never wins
            best.replace(with: v, where: better)
            bestIndex.replace(with: index, where: better)
            index &+= step
            i += width
        }
        var m = -Float.infinity
        var at = Int.max
        for j in 0..<width where best[j] > m || (best[j] == m && Int(bestIndex[j]) < at) {
            m = best[j]
            at = Int(bestIndex[j])
        }
        if at == Int.max { at = 0 }
        while i < n {
            if l[i] > m {
                m = l[i]
                at = i
            }
            i += 1
        }
        if m == -.infinity {
            // No finite maximum: report the first -inf (or 0 when everything is NaN).
            for j in 0..<n where l[j] == m { return (m, j) }
            return (m, 0)
        }
        return (m, at)
    }

    /// Adds the lanes of a block accumulator into a `Double` total.
    @inline(__always)
    private static func flush(_ acc: inout Vec, into total: inout Double) {
        for j in 0..<width { total += Double(acc[j]) }
        acc = Vec(repeating: 0)
    }

    /// out[i] = exp(l[i] - shift); returns the sum (per-lane `Float` partial sums over short
    /// blocks, accumulated in `Double`).
   
    static func expShifted(
        _ l: UnsafeBufferPointer<Float>, shift: Float, into out: UnsafeMutablePointer<Float>
    ) -> Double {
        let n = l.count
        let src = l.baseAddress!
        let s = Vec(repeating: shift)
        var acc = Vec(repeating: 0)
        var total = 0.0
        var i = 0
        var block = 0
        while i + width <= n {
            let e = exp(load(src, i) - s)
            store(e, out, i)
            acc += e
            i += width
            block += 1
            if block == 16 {
                flush(&acc, into: &total)
                block = 0
            }
        }
        if i < n {
            let e = exp(loadPartial(src, i, n - i, fill: -.infinity) - s)
            storePartial(e, out, i, n - i)
            acc += e
        }
        flush(&acc, into: &total)
        return total
    }

    /// Which tokens survive the filters, expressed over the whole vocabulary: token `i` with
    /// logit `x` is kept iff it ranks at or above the boundary candidate
    /// (`x > boundaryValue`, or `x == boundaryValue` and `i <= boundaryIndex`) and
    /// `x >= minCut`.
    struct KeepRule {
        var boundaryValue: Float
        var boundaryIndex: Int32
        var minCut: Float
        var maxLogit: Float
        var temperature: Float

        /// Keeps every token (subject to `minCut`).
        static func all(minCut: Float, maxLogit: Float, temperature: Float) -> KeepRule {
            KeepRule(boundaryValue: -.infinity, boundaryIndex: .max, minCut: minCut, maxLogit: maxLogit,
                     temperature: temperature)
        }
    }

    @inline(__always)
    private static func keptWeights(_ x: Vec, firstIndex: Int, _ rule: KeepRule) -> Vec {
        let idx = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: firstIndex)) &+ SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
        let bv = Vec(repeating: rule.boundaryValue)
        let ranked = (x .> bv) .| ((x .== bv) .& (idx .<= SIMD8<Int32>(repeating: rule.boundaryIndex)))
        let keep = ranked .& (x .>= Vec(repeating: rule.minCut))
        var w = exp((x - Vec(repeating: rule.maxLogit)) / Vec(repeating: rule.temperature))
        w.replace(with: 0, where: .!keep)
        return w
    }

    /// Writes the final distribution for `rule` into `out` (same count as `l`): kept tokens get
    /// softmax((x - max) / T), the rest exactly 0.
   
    static func fillDense(_ l: UnsafeBufferPointer<Float>, _ rule: KeepRule, into out: UnsafeMutableBufferPointer<Float>) {
        let n = l.count
        precondition(out.count == n)
        let src = l.baseAddress!
        let dst = out.baseAddress!
        var acc = Vec(repeating: 0)
        var total = 0.0
        var block = 0
        var i = 0
        while i + width <= n {
            let w = keptWeights(load(src, i), firstIndex: i, rule)
            store(w, dst, i)
            acc += w
            i += width
            block += 1
            if block == 16 {
                flush(&acc, into: &total)
                block = 0
            }
        }
        let tail = n - i
        if tail > 0 {
            let w = keptWeights(loadPartial(src, i, tail, fill: -.infinity), firstIndex: i, rule)
            storePartial(w, dst, i, tail)
            acc += w
        }
        flush(&acc, into: &total)
        // The maximum is always kept and contributes exp(0) = 1, so total ≥ 1.
        let scale = Vec(repeating: Float(1 / total))
        i = 0
        while i + width <= n {
            store(load(UnsafePointer(dst), i) * scale, dst, i)
            i += width
        }
        while i < n {
            dst[i] *= scale[0]
            i += 1
        }
    }
}
