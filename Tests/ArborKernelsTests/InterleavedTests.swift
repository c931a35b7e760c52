import ArborGGUF
import ArborKernels
import CArborKernels
import Testing

/// The x8 kernel (Q4_K rows interleaved 8 at a time, AVX-512 builds): the same results for any
/// batch, split or thread count, close to the row kernel, and used by `matmul` and
/// `matmul(group:)` alike.
@Suite("Interleaved Q4_K matmul")
struct InterleavedTests {
    static let available = arbor_q4_K_x8_available() != 0

    static func run(_ m: QuantizedMatrix, _ x: [Float], batch: Int, pool: ThreadPool) -> [Float] {
        var y = [Float](repeating: .nan, count: batch * m.rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { matmul(m, xp.baseAddress!, batch: batch, $0.baseAddress!, scratch: MatmulScratch(), pool: pool) }
        }
        return y
    }

    @Test(arguments: [(1536, 48), (8960, 16), (256, 40)])
    func batchesSplitsAndThreadsGiveTheSameBits(_ shape: (columns: Int, rows: Int)) throws {
        try #require(Self.available, "no x8 kernel in this build")
        var rng = SplitMix64(seed: 31 &+ UInt64(shape.columns))
        let w = WideKernelTests.weights(.q4_K, n: shape.columns, rows: shape.rows, raw: true, rng: &rng)
        let plain = w.withUnsafeBytes { QuantizedMatrix(type: .q4_K, rows: shape.rows, columns: shape.columns, data: $0.baseAddress!) }
        let x8 = plain.interleavedForMatmul()
        #expect(x8.interleaved != nil)
        let maxB = 19
        let x = rng.values(maxB * shape.columns, scale: 0.8)
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)]
        let alone = w.withUnsafeBytes { _ in
            (0..<maxB).map { b in Self.run(x8, Array(x[(b * shape.columns)..<((b + 1) * shape.columns)]), batch: 1, pool: pools[0]) }
        }
        let rowKernel = w.withUnsafeBytes { _ in Self.run(plain, x, batch: maxB, pool: pools[1]) }
        for (b, row) in alone.enumerated() {
            let scale = row.map { abs($0) }.max()! + 1e-6
            for r in 0..<shape.rows {
                #expect(abs(row[r] - rowKernel[b * shape.rows + r]) <= 2e-6 * scale, "row \(r) token \(b): x8 \(row[r]) vs rows \(rowKernel[b * shape.rows + r])")
            }
        }
        for batch in [2, 3, 7, 8, 9, 16, 19] {
            for pool in pools {
                let y = w.withUnsafeBytes { _ in Self.run(x8, Array(x[..<(batch * shape.columns)]), batch: batch, pool: pool) }
                for b in 0..<batch {
                    #expect(zip(y[(b * shape.rows)..<((b + 1) * shape.rows)], alone[b]).allSatisfy { $0.bitPattern == $1.bitPattern },
                            "B=\(batch) threads=\(pool.threads) token \(b) differs from the token alone")
                }
            }
        }
    }

    @Test func groupedAndSingleCallsAgree() throws {
        try #require(Self.available, "no x8 kernel in this build")
        var rng = SplitMix64(seed: 5)
        let n = 512
        let wa = WideKernelTests.weights(.q4_K, n: n, rows: 24, raw: true, rng: &rng)
        let wb = WideKernelTests.weights(.q4_K, n: n, rows: 13, raw: true, rng: &rng)  // not a multiple of 8: row kernel
        let x = rng.values(5 * n)
        try wa.withUnsafeBytes { pa in
            try wb.withUnsafeBytes { pb in
                let a = QuantizedMatrix(type: .q4_K, rows: 24, columns: n, data: pa.baseAddress!).interleavedForMatmul()
                let b = QuantizedMatrix(type: .q4_K, rows: 13, columns: n, data: pb.baseAddress!).interleavedForMatmul()
                #expect(a.interleaved != nil && b.interleaved == nil)
                let pool = ThreadPool(threads: 2)
                var ya = [Float](repeating: .nan, count: 5 * 24), yb = [Float](repeating: .nan, count: 5 * 13)
                try x.withUnsafeBufferPointer { xp in
                    try ya.withUnsafeMutableBufferPointer { pya in
                        try yb.withUnsafeMutableBufferPointer { pyb in
                            matmul(group: [a, b], xp.baseAddress!, batch: 5, [pya.baseAddress!, pyb.baseAddress!],
                                   scratch: MatmulGroupScratch(), pool: pool)
                            try #require(pya.allSatisfy { !$0.isNaN } && pyb.allSatisfy { !$0.isNaN })
                        }
                    }
                }
                #expect(zip(ya, Self.run(a, x, batch: 5, pool: pool)).allSatisfy { $0.bitPattern == $1.bitPattern })
                #expect(zip(yb, Self.run(b, x, batch: 5, pool: pool)).allSatisfy { $0.bitPattern == $1.bitPattern })
            }
        }
    }
}
