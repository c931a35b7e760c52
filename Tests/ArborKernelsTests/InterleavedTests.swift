import ArborGGUF
import ArborKernels
import CArborKernels
import Testing

/// The x8 kernels (Q4_K and Q6_K rows interleaved 8 at a time, AVX-512 builds): the same
/// results for any batch, split or thread count, close to the row kernel, and used by `matmul`
/// and `matmul(group:)` alike.
@Suite("Interleaved Q4_K / Q6_K matmul")
struct InterleavedTests {
    static let available = arbor_x8_available() != 0

    static func run(_ m: QuantizedMatrix, _ x: [Float], batch: Int, pool: ThreadPool) -> [Float] {
        var y = [Float](repeating: .nan, count: batch * m.rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { matmul(m, xp.baseAddress!, batch: batch, $0.baseAddress!, scratch: MatmulScratch(), pool: pool) }
        }
        return y
    }

    static let shapes: [(type: GGMLType, columns: Int, rows: Int)] = [
        (.q4_K, 1536, 48), (.q4_K, 8960, 16), (.q4_K, 256, 40), (.q6_K, 1536, 48), (.q6_K, 8960, 16), (.q6_K, 256, 40),
    ]

    @Test(arguments: 0..<6)
    func batchesSplitsAndThreadsGiveTheSameBits(_ index: Int) throws {
        let shape = Self.shapes[index]
        try #require(Self.available, "no x8 kernel in this build")
        var rng = SplitMix64(seed: 31 &+ UInt64(shape.columns) &+ UInt64(shape.type.rawValue))
        let w = WideKernelTests.weights(shape.type, n: shape.columns, rows: shape.rows, raw: true, rng: &rng)
        let plain = w.withUnsafeBytes { QuantizedMatrix(type: shape.type, rows: shape.rows, columns: shape.columns, data: $0.baseAddress!) }
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
                // Q6_K's x8 kernel is the row kernel's arithmetic lane for lane: equal bits.
                let tolerance: Float = shape.type == .q6_K ? 0 : 2e-6 * scale
                #expect(abs(row[r] - rowKernel[b * shape.rows + r]) <= tolerance,
                        "\(shape.type) row \(r) token \(b): x8 \(row[r]) vs rows \(rowKernel[b * shape.rows + r])")
            }
        }
        for batch in [2, 3, 7, 8, 9, 16, 19] {
            for pool in pools {
                let y = w.withUnsafeBytes { _ in Self.run(x8, Array(x[..<(batch * shape.columns)]), batch: batch, pool: pool) }
                for b in 0..<batch {
                    #expect(zip(y[(b * shape.rows)..<((b + 1) * shape.rows)], alone[b]).allSatisfy { $0.bitPattern == $1.bitPattern },
                            "\(shape.type) B=\(batch) threads=\(pool.threads) token \(b) differs from the token alone")
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
        let wc = WideKernelTests.weights(.q6_K, n: n, rows: 16, raw: true, rng: &rng)
        let x = rng.values(5 * n)
        try wa.withUnsafeBytes { pa in
            try wb.withUnsafeBytes { pb in
                try wc.withUnsafeBytes { pc in
                    let a = QuantizedMatrix(type: .q4_K, rows: 24, columns: n, data: pa.baseAddress!).interleavedForMatmul()
                    let b = QuantizedMatrix(type: .q4_K, rows: 13, columns: n, data: pb.baseAddress!).interleavedForMatmul()
                    let c = QuantizedMatrix(type: .q6_K, rows: 16, columns: n, data: pc.baseAddress!).interleavedForMatmul()
                    #expect(a.interleaved != nil && b.interleaved == nil && c.interleaved != nil)
                    let pool = ThreadPool(threads: 2)
                    var y0 = [Float](repeating: .nan, count: 5 * 24), y1 = [Float](repeating: .nan, count: 5 * 13)
                    var y2 = [Float](repeating: .nan, count: 5 * 16)
                    try x.withUnsafeBufferPointer { xp in
                        try y0.withUnsafeMutableBufferPointer { p0 in
                            try y1.withUnsafeMutableBufferPointer { p1 in
                                try y2.withUnsafeMutableBufferPointer { p2 in
                                    matmul(group: [a, b, c], xp.baseAddress!, batch: 5, [p0.baseAddress!, p1.baseAddress!, p2.baseAddress!],
                                           scratch: MatmulGroupScratch(), pool: pool)
                                    try #require(!p0.contains { $0.isNaN } && !p1.contains { $0.isNaN } && !p2.contains { $0.isNaN })
                                }
                            }
                        }
                    }
                    for (m, y) in zip([a, b, c], [y0, y1, y2]) {
                        #expect(zip(y, Self.run(m, x, batch: 5, pool: pool)).allSatisfy { $0.bitPattern == $1.bitPattern })
                    }
                }
            }
        }
    }
}
