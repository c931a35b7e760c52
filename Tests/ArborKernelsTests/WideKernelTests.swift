import ArborGGUF
import ArborKernels
import CArborKernels
import Testing

/// The dot kernels that serve batches: the 512-bit Q4_K/Q6_K tiles (where the build has
/// AVX-512) against the 256-bit AVX2 tiles, and any batch against the same rows one at a time.
@Suite("Wide and batched dot kernels")
struct WideKernelTests {
    /// Random weight rows of `rows × n` elements. K formats also get raw random bytes (every
    /// scale, min and quant bit pattern, int8 Q6_K scales down to -128) with sane f16 scales.
    static func weights(_ type: GGMLType, n: Int, rows: Int, raw: Bool, rng: inout SplitMix64) -> [UInt8] {
        guard raw else { return quantize(rng.values(rows * n, scale: 0.05), to: type) }
        let blockBytes = type.blockBytes, blocks = rows * n / type.blockSize
        var bytes = (0..<(blocks * blockBytes)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        func half(_ v: Float) -> (UInt8, UInt8) {
            let b = Float16(v).bitPattern
            return (UInt8(b & 0xFF), UInt8(b >> 8))
        }
        // Offsets of the f16 scales in a block: Q4_K/Q5_K d, dmin at 0, 2; Q6_K d at 208.
        let halves: [Int]
        switch type {
        case .q4_K, .q5_K: halves = [0, 2]
        case .q6_K: halves = [208]
        default: halves = []
        }
        for b in 0..<blocks {
            for o in halves {
                (bytes[b * blockBytes + o], bytes[b * blockBytes + o + 1]) = half(Float.random(in: -0.02...0.02, using: &rng))
            }
        }
        return bytes
    }

    /// `rows` activation rows quantized for `type`, with row-dependent scales (one with outliers).
    static func activations(_ type: GGMLType, n: Int, rows: Int, rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        for r in 0..<rows { out += quantizedActivation(rng.values(n, scale: Float(r % 5 + 1) * 0.7), type.vecDotType!) }
        return out
    }

    enum Kernel { case fast, avx2, scalar }

    static func dot(_ kernel: Kernel, _ type: GGMLType, n: Int, _ w: [UInt8], _ a: [UInt8], rows: Int, rowBytes: Int) -> [Float]? {
        var out = [Float](repeating: .nan, count: rows)
        let rc = w.withUnsafeBytes { wp in
            a.withUnsafeBytes { ap in
                switch kernel {
                case .fast: arbor_vec_dot(type.rawValue, Int64(n), wp.baseAddress!, ap.baseAddress!, rowBytes, Int64(rows), &out, 1)
                case .avx2: arbor_vec_dot_avx2(type.rawValue, Int64(n), wp.baseAddress!, ap.baseAddress!, rowBytes, Int64(rows), &out, 1)
                case .scalar: arbor_vec_dot_scalar(type.rawValue, Int64(n), wp.baseAddress!, ap.baseAddress!, rowBytes, Int64(rows), &out, 1)
                }
            }
        }
        return rc == 0 ? out : nil
    }

    /// For random lengths and B = 1...16: every row of a batch gets the bits it gets alone, the
    /// bits of the AVX2 tile (the 512-bit tiles must not change any result), and agrees with the
    /// scalar reference to rounding.
    @Test(arguments: quantizedWeightTypes)
    func batchesAndWideTilesAreBitIdentical(_ type: GGMLType) {
        var rng = SplitMix64(seed: 4242 &+ UInt64(type.rawValue))
        let unit = type.blockSize == 256 ? 256 : 32
        let hasAVX2 = arbor_vec_dot_is_simd(type.rawValue) != 0
        let lengths = [unit, 6 * 256, Int.random(in: 1...24, using: &rng) * 256, Int.random(in: 1...40, using: &rng) * 256]
        for (k, n) in lengths.enumerated() {
            let raw = type.blockSize == 256 && k % 2 == 1
            let w = Self.weights(type, n: n, rows: 1, raw: raw, rng: &rng)
            let maxB = 16
            let rowBytes = type.vecDotType!.rowBytes(count: n)!
            let a = Self.activations(type, n: n, rows: maxB, rng: &rng)
            let alone = (0..<maxB).map { c in
                Self.dot(.fast, type, n: n, w, Array(a[(c * rowBytes)..<((c + 1) * rowBytes)]), rows: 1, rowBytes: rowBytes)![0]
            }
            let scalar = Self.dot(.scalar, type, n: n, w, a, rows: maxB, rowBytes: rowBytes)!
            for c in 0..<maxB {
                let tolerance = 1e-5 * max(abs(Double(scalar[c])), 1) + 1e-4 * Double(n) / 256
                #expect(abs(Double(alone[c]) - Double(scalar[c])) <= tolerance,
                        "\(type) n=\(n) raw=\(raw) row \(c): \(alone[c]) vs scalar \(scalar[c])")
            }
            for b in 1...maxB {
                let batch = Self.dot(.fast, type, n: n, w, a, rows: b, rowBytes: rowBytes)!
                #expect(zip(batch, alone).allSatisfy { $0.bitPattern == $1.bitPattern },
                        "\(type) n=\(n) raw=\(raw) B=\(b): a batch row differs from the row alone")
                if hasAVX2, let narrow = Self.dot(.avx2, type, n: n, w, a, rows: b, rowBytes: rowBytes) {
                    #expect(zip(batch, narrow).allSatisfy { $0.bitPattern == $1.bitPattern },
                            "\(type) n=\(n) raw=\(raw) B=\(b): differs from the AVX2 tile")
                }
            }
        }
    }

    /// Several weight rows through the cache-blocked row loop, B = 1...16 and batches of several
    /// column blocks (16 rows each at n = 1536, so the per-group activation data of later
    /// blocks is used too), against single dots.
    @Test(arguments: [GGMLType.q4_K, .q6_K])
    func matmulRowsMatchSingleDots(_ type: GGMLType) {
        var rng = SplitMix64(seed: 77)
        let n = 1536, rows = 24, maxB = 45
        let w = Self.weights(type, n: n, rows: rows, raw: true, rng: &rng)
        let wRow = type.rowBytes(count: n)!, aRow = type.vecDotType!.rowBytes(count: n)!
        let a = Self.activations(type, n: n, rows: maxB, rng: &rng)
        for b in Array(1...16) + [24, 37, 45] {
            var y = [Float](repeating: .nan, count: rows * b)
            w.withUnsafeBytes { wp in
                a.withUnsafeBytes { ap in
                    #expect(arbor_matmul_rows(type.rawValue, Int64(n), wp.baseAddress!, wRow, 0, Int64(rows),
                                              ap.baseAddress!, aRow, Int64(b), &y, Int64(rows)) == 0)
                }
            }
            for r in 0..<rows {
                let wr = Array(w[(r * wRow)..<((r + 1) * wRow)])
                for c in 0..<b {
                    let single = vecDot(type, wr, Array(a[(c * aRow)..<((c + 1) * aRow)]), count: n)
                    #expect(y[c * rows + r].bitPattern == single.bitPattern, "\(type) B=\(b) row \(r) column \(c)")
                }
            }
        }
    }

    @Test func wideTilesWhereTheBuildHasThem() {
        // Informational: which kernels this build runs (the tests above hold either way).
        print("note: 512-bit Q4_K tile \(arbor_vec_dot_is_avx512(GGMLType.q4_K.rawValue) != 0 ? "on" : "off"), Q6_K \(arbor_vec_dot_is_avx512(GGMLType.q6_K.rawValue) != 0 ? "on" : "off")")
        #expect(arbor_vec_dot_is_avx512(GGMLType.q8_0.rawValue) == 0)
    }
}
