import CArborKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise and per-token operations of the decoder, written to follow llama.cpp's numerics
/// (so logits track the reference engine) and to be batch-invariant: every function works on one
/// token's row at a time, so a token's result never depends on what else is in the batch.
enum TransformerOps {
    /// `y = x / sqrt(mean(x²) + eps) * weight`, the sum of squares accumulated in Double as
    /// ggml's `rms_norm` does. `x` and `y` may alias.
    @inline(__always)
    static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int, eps: Float) {
        var sum = 0.0
        for i in 0..<n { sum += Double(x[i] * x[i]) }
        let mean = Float(sum / Double(n))
        let scale = 1 / (mean + eps).squareRoot()
        for i in 0..<n { y[i] = (x[i] * scale) * weight[i] }
    }

    /// Rotary embedding of one head in place. `neox` rotates pairs `(i, i + dims/2)` (Qwen2,
    /// Gemma 3); otherwise adjacent pairs `(2i, 2i+1)` (llama). `cosSin` is `[dims/2][2]`.
    @inline(__always)
    static func rope(_ x: UnsafeMutablePointer<Float>, dims: Int, neox: Bool, cosSin: UnsafePointer<Float>) {
        let half = dims / 2
        for i in 0..<half {
            let c = cosSin[2 * i], s = cosSin[2 * i + 1]
            let a = neox ? i : 2 * i
            let b = neox ? i + half : 2 * i + 1
            let x0 = x[a], x1 = x[b]
            x[a] = x0 * c - x1 * s
            x[b] = x0 * s + x1 * c
        }
    }

    /// The cos/sin table of one position, built as ggml's rope cache does (theta multiplied
    /// step by step in Float, so the angles match the reference's bit for bit).
    static func ropeTable(position: Int32, dims: Int, base: Float, into table: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2.0 / Float(dims))
        var theta = Float(position)
        for i in 0..<(dims / 2) {
            table[2 * i] = cosf(theta)
            table[2 * i + 1] = sinf(theta)
            theta *= thetaScale
        }
    }

    /// `gate = silu(gate) * up` (SwiGLU), with the vector exp llama.cpp uses (see `arbor_swiglu_f32`).
    @inline(__always)
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
        arbor_swiglu_f32(gate, up, Int64(n))
    }

    /// `gate = gelu_tanh(gate) * up` (GeGLU) through an F16 table, as ggml computes GELU: the
    /// input is rounded to F16, GELU evaluated in Float and the result rounded to F16.
    @inline(__always)
    static func geglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let x = gate[i]
            let g: Float
            if x <= -10 {
                g = 0
            } else if x >= 10 {
                g = x
            } else {
                g = geluTable[Int(Float16(x).bitPattern)]
            }
            gate[i] = g * up[i]
        }
    }

    /// GELU (tanh approximation) at every F16 value, rounded to F16, widened back to Float.
    static let geluTable: [Float] = (0..<65536).map { bits in
        let x = Float(Float16(bitPattern: UInt16(bits)))
        let sqrt2OverPi: Float = 0.797_884_560_802_865_355_88
        let g = 0.5 * x * (1 + tanhf(sqrt2OverPi * x * (1 + 0.044715 * x * x)))
        return Float(Float16(g))
    }

    /// Dot product of a Float query (already rounded to F16 values) with an F16 key.
    @inline(__always)
    static func dot(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float16>, count n: Int) -> Float {
        // 8 independent partial sums, combined in a fixed order: the result depends only on
        // the two rows, never on the batch.
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            let kv = SIMD8<Float>(
                Float(k[i]), Float(k[i + 1]), Float(k[i + 2]), Float(k[i + 3]),
                Float(k[i + 4]), Float(k[i + 5]), Float(k[i + 6]), Float(k[i + 7]))
            let qv = UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<Float>.self)
            acc = acc.addingProduct(qv, kv)
            i += 8
        }
        var s = acc.sum()
        while i < n { s += q[i] * Float(k[i]); i += 1 }
        return s
    }

    /// `y += w * v` for an F16 row `v`.
    @inline(__always)
    static func axpy(_ w: Float, _ v: UnsafePointer<Float16>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        for i in 0..<n { y[i] += w * Float(v[i]) }
    }
}
