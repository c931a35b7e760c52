import ArborGGUF
import ArborKernels
import Testing

@Suite("Grouped matmul")
struct MatmulGroupTests {
    @Test("matmul(group:) equals separate matmul calls bit for bit, across mixed weight types", arguments: [1, 3, 8])
    func equalsSeparateCalls(batch: Int) {
        var rng = SplitMix64(seed: 99)
        let columns = 256
        let specs: [(type: GGMLType, rows: Int)] = [(.q4_K, 40), (.q6_K, 24), (.q8_0, 33), (.q4_1, 17)]
        // Stable copies of the weights and outputs (pointers must not escape array closures).
        var buffers: [UnsafeMutableRawPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        func stable<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, values.count * MemoryLayout<T>.stride), alignment: 64)
            buffers.append(p)
            let typed = p.bindMemory(to: T.self, capacity: values.count)
            typed.initialize(from: values, count: values.count)
            return typed
        }
        let matrices = specs.map { spec in
            QuantizedMatrix(type: spec.type, rows: spec.rows, columns: columns,
                            data: UnsafeRawPointer(stable(quantize(rng.values(spec.rows * columns, scale: 0.2), to: spec.type))))
        }
        let x = stable(rng.values(batch * columns))
        let pool = ThreadPool(threads: 2)
        let separate = matrices.map { m in stable([Float](repeating: .nan, count: batch * m.rows)) }
        let grouped = matrices.map { m in stable([Float](repeating: .nan, count: batch * m.rows)) }
        for (m, y) in zip(matrices, separate) {
            matmul(m, x, batch: batch, y, scratch: MatmulScratch(), pool: pool)
        }
        matmul(group: matrices, x, batch: batch, grouped, scratch: MatmulGroupScratch(), pool: pool)
        for (i, m) in matrices.enumerated() {
            let a = (0..<(batch * m.rows)).map { separate[i][$0].bitPattern }
            let b = (0..<(batch * m.rows)).map { grouped[i][$0].bitPattern }
            #expect(a == b, "matrix \(i) (\(m.type))")
        }
    }
}
