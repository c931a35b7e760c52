import ArborGGUF
import ArborKernels
import CArborKernels
import Testing

/// A random weight row: quantized random values (K formats via the simple quantizer).
private func weightRow(_ type: GGMLType, count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return quantize(rng.values(count, scale: 0.05), to: type)
}

/// Σ w·a computed in Double with the kernel's own algebra from the quantized operands: exact up
/// to the float rounding of the per-block scales, so the kernels must agree to ~1e-6.
private func decomposedReference(_ wtype: GGMLType, _ w: [UInt8], _ a: [UInt8], _ x: [Float]) -> (value: Double, magnitude: Double) {
    let n = x.count
    let wd = dequantized(w, wtype, count: n)
    guard let vdt = wtype.vecDotType else { return (.nan, .nan) }
    switch vdt {
    case .f32:
        let terms = (0..<n).map { Double(wd[$0]) * Double(x[$0]) }
        return (terms.reduce(0, +), terms.reduce(0) { $0 + abs($1) })
    case .q8_1:
        // Σ (d·q + m)·(da·qa) is evaluated as d·da·Σq·qa + m·s with s the stored f16 sum.
        var value = 0.0, magnitude = 0.0
        for b in 0..<(n / 32) {
            let wb = b * wtype.blockBytes, ab = b * 36
            let d = Double(halfToFloat(w.u16(at: wb))), m = Double(halfToFloat(w.u16(at: wb + 2)))
            let da = Double(halfToFloat(a.u16(at: ab))), s = Double(halfToFloat(a.u16(at: ab + 2)))
            for i in 0..<32 {
                let q = ((Double(wd[32 * b + i]) - m) / d).rounded()  // the level, exactly
                let t = d * q * da * Double(Int8(bitPattern: a[ab + 4 + i]))
                value += t; magnitude += abs(t)
            }
            value += m * s; magnitude += abs(m * s)
        }
        return (value, magnitude)
    default:
        let ad = dequantized(a, vdt, count: n)
        let terms = (0..<n).map { Double(wd[$0]) * Double(ad[$0]) }
        return (terms.reduce(0, +), terms.reduce(0) { $0 + abs($1) })
    }
}

@Suite("Dot products")
struct DotTests {
    @Test(arguments: allWeightTypes)
    func matchesDecomposedReference(_ type: GGMLType) {
        for (k, n) in [256, 512, 1536].enumerated() {
            let w = weightRow(type, count: n, seed: UInt64(10 + k))
            var rng = SplitMix64(seed: UInt64(100 + k))
            let x = rng.values(n)
            let a = quantizedActivation(x, type.vecDotType!)
            let ref = decomposedReference(type, w, a, x)
            for scalar in [false, true] {
                let got = Double(vecDot(type, w, a, count: n, scalar: scalar))
                #expect(abs(got - ref.value) <= 2e-6 * ref.magnitude + 1e-9,
                        "\(type) n=\(n) \(scalar ? "scalar" : "simd"): \(got) vs \(ref.value) (Σ|terms| \(ref.magnitude))")
            }
        }
    }

    /// Against the unquantized activation: the difference is the activation's quantization error,
    /// at most about half a step (d/2, plus the f16 rounding of d) per element.
    @Test(arguments: allWeightTypes)
    func matchesFloatDotWithinActivationError(_ type: GGMLType) {
        let n = 1024
        let w = weightRow(type, count: n, seed: 77)
        var rng = SplitMix64(seed: 78)
        let x = rng.values(n)
        let vdt = type.vecDotType!
        let a = quantizedActivation(x, vdt)
        let wd = dequantized(w, type, count: n)
        let exact = (0..<n).reduce(0.0) { $0 + Double(wd[$1]) * Double(x[$1]) }
        let magnitude = (0..<n).reduce(0.0) { $0 + abs(Double(wd[$1]) * Double(x[$1])) }
        var bound = 1e-5 * magnitude
        if vdt != .f32 {
            let block = vdt.blockSize
            for b in 0..<(n / block) {
                let amax = Double(x[(b * block)..<((b + 1) * block)].map { abs($0) }.max()!)
                let step = amax / 127
                for i in (b * block)..<((b + 1) * block) { bound += abs(Double(wd[i])) * step * 0.6 }
                if vdt == .q8_1 {  // the min times the f16 block sum: its rounding, and Σ of the steps
                    let m = abs(Double(halfToFloat(w.u16(at: b * type.blockBytes + 2))))
                    let sum = Double(x[(b * block)..<((b + 1) * block)].reduce(0, +))
                    bound += m * (abs(sum) / 1024 + 32 * step * 0.6)
                }
            }
        }
        let got = Double(vecDot(type, w, a, count: n))
        #expect(abs(got - exact) <= bound, "\(type): \(got) vs \(exact), bound \(bound)")
    }

    /// The SIMD kernels against the scalar ones, for several activation rows at once.
    @Test(arguments: allWeightTypes)
    func simdAgreesWithScalar(_ type: GGMLType) {
        if arbor_vec_dot_is_simd(type.rawValue) == 0 {
            print("note: no SIMD kernel for \(type) in this build; comparing scalar with itself")
        }
        let n = 2048
        let cols = 7
        let w = weightRow(type, count: n, seed: 5)
        let vdt = type.vecDotType!
        let rowBytes = vdt.rowBytes(count: n)!
        var acts: [UInt8] = []
        var magnitudes: [Double] = []
        let wd = dequantized(w, type, count: n)
        for c in 0..<cols {
            var rng = SplitMix64(seed: UInt64(200 + c))
            let x = rng.values(n, scale: Float(c + 1))
            let a = quantizedActivation(x, vdt)
            acts += a
            let ad = dequantized(a, vdt, count: n)
            magnitudes.append((0..<n).reduce(0.0) { $0 + abs(Double(wd[$1]) * Double(ad[$1])) })
        }
        var fast = [Float](repeating: 0, count: cols), slow = fast
        w.withUnsafeBytes { wp in
            acts.withUnsafeBytes { ap in
                #expect(arbor_vec_dot(type.rawValue, Int64(n), wp.baseAddress!, ap.baseAddress!, rowBytes, Int64(cols), &fast, 1) == 0)
                #expect(arbor_vec_dot_scalar(type.rawValue, Int64(n), wp.baseAddress!, ap.baseAddress!, rowBytes, Int64(cols), &slow, 1) == 0)
            }
        }
        for c in 0..<cols {
            #expect(abs(Double(fast[c]) - Double(slow[c])) <= 1e-5 * max(abs(Double(slow[c])), magnitudes[c] / 64) + 1e-9,
                    "\(type) column \(c): simd \(fast[c]) scalar \(slow[c])")
        }
    }

    @Test func rejectsUnsupportedTypesAndLengths() {
        var out: Float = 0
        let buf = [UInt8](repeating: 0, count: 1024)
        buf.withUnsafeBytes { p in
            #expect(arbor_vec_dot(GGMLType.q2_K.rawValue, 256, p.baseAddress!, p.baseAddress!, 0, 1, &out, 1) != 0)
            #expect(arbor_vec_dot(GGMLType.q4_K.rawValue, 128, p.baseAddress!, p.baseAddress!, 0, 1, &out, 1) != 0)
            var f = [Float](repeating: 0, count: 256)
            #expect(arbor_dequantize_row(GGMLType.q3_K.rawValue, p.baseAddress!, &f, 256) != 0)
            #expect(arbor_dequantize_row(GGMLType.q4_0.rawValue, p.baseAddress!, &f, 20) != 0)
        }
    }
}

@Suite("Matmul")
struct MatmulTests {
    static let pool1 = ThreadPool(threads: 1)
    static let pool2 = ThreadPool(threads: 2)
    static let pool3 = ThreadPool(threads: 3)

    private struct Problem {
        let matrix: QuantizedMatrix
        let storage: [UInt8]
        let x: [Float]
    }

    private static func problem(_ type: GGMLType, rows: Int, columns: Int, batch: Int) -> (weights: [UInt8], x: [Float]) {
        var bytes: [UInt8] = []
        for r in 0..<rows { bytes += weightRow(type, count: columns, seed: UInt64(1000 + r)) }
        var rng = SplitMix64(seed: 99)
        return (bytes, rng.values(batch * columns))
    }

    private static func run(_ type: GGMLType, _ weights: [UInt8], rows: Int, columns: Int,
                            _ x: ArraySlice<Float>, batch: Int, pool: ThreadPool, scratch: MatmulScratch) -> [Float] {
        var y = [Float](repeating: .nan, count: batch * rows)
        weights.withUnsafeBytes { wp in
            let w = QuantizedMatrix(type: type, rows: rows, columns: columns, data: wp.baseAddress!)
            Array(x).withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    matmul(w, xp.baseAddress!, batch: batch, yp.baseAddress!, scratch: scratch, pool: pool)
                }
            }
        }
        return y
    }

    /// Every row of a batch of B gets exactly the bits it gets alone, for B = 1...9, whatever the
    /// thread count; and matmul agrees with the single dot.
    @Test(arguments: allWeightTypes)
    func batchInvariant(_ type: GGMLType) {
        let rows = 37, columns = 512, maxBatch = 9
        let (weights, x) = Self.problem(type, rows: rows, columns: columns, batch: maxBatch)
        let scratch = MatmulScratch()
        var alone: [[Float]] = []
        for b in 0..<maxBatch {
            alone.append(Self.run(type, weights, rows: rows, columns: columns, x[(b * columns)..<((b + 1) * columns)],
                                  batch: 1, pool: Self.pool1, scratch: scratch))
        }
        for pool in [Self.pool1, Self.pool2, Self.pool3] {
            for batch in 1...maxBatch {
                let y = Self.run(type, weights, rows: rows, columns: columns, x[0..<(batch * columns)],
                                 batch: batch, pool: pool, scratch: scratch)
                for b in 0..<batch {
                    let same = (0..<rows).allSatisfy { y[b * rows + $0].bitPattern == alone[b][$0].bitPattern }
                    #expect(same, "\(type) batch \(batch) row \(b) threads \(pool.threads) differs from batch 1")
                }
            }
        }
        // The single-dot entry point gives the same bits.
        let a = quantizedActivation(Array(x[0..<columns]), type.vecDotType!)
        for r in [0, 17, 36] {
            let w = Array(weights[(r * type.rowBytes(count: columns)!)..<((r + 1) * type.rowBytes(count: columns)!)])
            #expect(vecDot(type, w, a, count: columns).bitPattern == alone[0][r].bitPattern, "\(type) row \(r)")
        }
    }

    /// Wide rows and a batch large enough for several row and activation blocks of the cache
    /// blocking (blocks of ~256 KB of weights and ~32 KB of activations): every result must be
    /// the same bits as the single dot, whether the rows go through matmul or arbor_matmul_rows.
    @Test(arguments: [(GGMLType.q8_0, 4096), (GGMLType.q4_K, 8192)])
    func blockedBatchMatchesSingleDots(_ type: GGMLType, _ columns: Int) {
        let rows = 130, batch = 11
        let (weights, x) = Self.problem(type, rows: rows, columns: columns, batch: batch)
        let vdt = type.vecDotType!
        let wRow = type.rowBytes(count: columns)!, aRow = vdt.rowBytes(count: columns)!
        #expect(rows * wRow > 2 * 256 * 1024 && 4 * aRow <= 32 * 1024 * 2, "problem must span several blocks")
        var acts: [UInt8] = []
        for b in 0..<batch { acts += quantizedActivation(Array(x[(b * columns)..<((b + 1) * columns)]), vdt) }
        var blocked = [Float](repeating: .nan, count: rows * batch)
        var single = blocked
        weights.withUnsafeBytes { wp in
            acts.withUnsafeBytes { ap in
                #expect(arbor_matmul_rows(type.rawValue, Int64(columns), wp.baseAddress!, wRow, 0, Int64(rows),
                                          ap.baseAddress!, aRow, Int64(batch), &blocked, Int64(rows)) == 0)
                for r in 0..<rows {
                    for b in 0..<batch {
                        single[b * rows + r] = vecDot(type, Array(weights[(r * wRow)..<((r + 1) * wRow)]),
                                                      Array(acts[(b * aRow)..<((b + 1) * aRow)]), count: columns)
                    }
                }
            }
        }
        let viaPool = Self.run(type, weights, rows: rows, columns: columns, x[...], batch: batch,
                               pool: Self.pool2, scratch: MatmulScratch())
        #expect(zip(blocked, single).allSatisfy { $0.bitPattern == $1.bitPattern })
        #expect(zip(viaPool, single).allSatisfy { $0.bitPattern == $1.bitPattern })
    }

    @Test func dequantizeRowOfMatrix() {
        let type = GGMLType.q6_K, rows = 3, columns = 512
        let (weights, _) = Self.problem(type, rows: rows, columns: columns, batch: 1)
        weights.withUnsafeBytes { wp in
            let w = QuantizedMatrix(type: type, rows: rows, columns: columns, data: wp.baseAddress!)
            #expect(w.rowBytes == 2 * 210)
            var row = [Float](repeating: 0, count: columns)
            row.withUnsafeMutableBufferPointer { dequantizeRow(w, row: 2, into: $0.baseAddress!) }
            #expect(row == dequantize(type: type, data: w.row(2), count: columns))
        }
    }
}

@Suite("Thread pool")
struct ThreadPoolTests {
    /// A pointer the closures may share; each index writes only its own slot.
    final class Slots: @unchecked Sendable {
        let p: UnsafeMutablePointer<Int>
        let count: Int
        init(_ n: Int) { p = .allocate(capacity: n); p.initialize(repeating: 0, count: n); count = n }
        deinit { p.deallocate() }
        var values: [Int] { Array(UnsafeBufferPointer(start: p, count: count)) }
    }

    @Test(arguments: [1, 2, 4])
    func everyIndexRunsOnce(_ threads: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threads == threads)
        for n in [0, 1, 2, 3, 17, 1000] {
            let slots = Slots(max(n, 1))
            pool.parallelFor(n) { i in slots.p[i] += 1 }
            #expect(slots.values.prefix(n).allSatisfy { $0 == 1 }, "n = \(n)")
        }
    }

    @Test func manyShortLoopsAndRanges() {
        let pool = ThreadPool(threads: 2)
        let slots = Slots(64)
        for _ in 0..<5000 {
            pool.parallelFor(64) { i in slots.p[i] += 1 }
        }
        #expect(slots.values.allSatisfy { $0 == 5000 })
        let cover = Slots(1001)
        pool.parallelFor(1001, grain: 10) { range in
            #expect(range.count >= 10 || range.upperBound == 1001)
            for i in range { cover.p[i] += 1 }
        }
        #expect(cover.values.allSatisfy { $0 == 1 })
    }

    /// Workers asleep (after their spin) wake up for the next loop.
    @Test func wakesAfterSleeping() async throws {
        let pool = ThreadPool(threads: 2, spinMicroseconds: 10)
        let slots = Slots(8)
        for round in 1...3 {
            try await Task.sleep(for: .milliseconds(20))
            pool.parallelFor(8) { i in slots.p[i] += 1 }
            #expect(slots.values.allSatisfy { $0 == round })
        }
    }

    @Test func nestedLoopRunsInline() {
        let pool = ThreadPool(threads: 2)
        let slots = Slots(16 * 16)
        pool.parallelFor(16) { i in
            pool.parallelFor(16) { j in slots.p[i * 16 + j] += 1 }
        }
        #expect(slots.values.allSatisfy { $0 == 1 })
    }

    @Test func concurrentCallersAreSerialised() async {
        let pool = ThreadPool(threads: 2)
        let slots = Slots(4 * 100)
        await withTaskGroup(of: Void.self) { group in
            for caller in 0..<4 {
                group.addTask {
                    for _ in 0..<50 {
                        pool.parallelFor(100) { i in slots.p[caller * 100 + i] += 1 }
                    }
                }
            }
        }
        #expect(slots.values.allSatisfy { $0 == 50 })
    }
}
