import ArborGGUF
import CArborKernels

/// Reusable memory for `matmul(group:)`: one activation buffer per vec-dot type.
public final class MatmulGroupScratch: @unchecked Sendable {
    fileprivate var buffers: [UInt32: MatmulScratch] = [:]
    public init() {}

    fileprivate func scratch(for type: GGMLType) -> MatmulScratch {
        if let s = buffers[type.rawValue] { return s }
        let s = MatmulScratch()
        buffers[type.rawValue] = s
        return s
    }
}

/// Several products with the same input in one parallel loop: `ys[i] = x · ws[i]ᵀ` for each i
/// (e.g. the query, key and value projections, or the gate and up projections).
///
/// Why: every `parallelFor` is a fork-join barrier, and a decode step of a 28-layer model runs a
/// few hundred of them; fusing the products that share an input removes two of every seven.
/// Each output is computed by exactly the same kernel call as `matmul` would use, so results
/// are bit-identical to separate calls.
public func matmul(
    group ws: [QuantizedMatrix], _ x: UnsafePointer<Float>, batch: Int, _ ys: [UnsafeMutablePointer<Float>],
    scratch: MatmulGroupScratch, pool: ThreadPool
) {
    precondition(ws.count == ys.count && !ws.isEmpty, "matmul(group:): one output per matrix")
    guard batch > 0 else { return }
    let n = ws[0].columns
    precondition(ws.allSatisfy { $0.columns == n }, "matmul(group:): matrices must share the input width")

    // Quantize the input once per distinct vec-dot type (one per token, as `matmul` does).
    var activations: [(pointer: UnsafeRawPointer, rowBytes: Int)] = []
    activations.reserveCapacity(ws.count)
    var done: [UInt32: (UnsafeRawPointer, Int)] = [:]
    for w in ws {
        guard let vdt = w.type.vecDotType, let rowBytes = vdt.rowBytes(count: n) else {
            preconditionFailure("matmul(group:): no dot for \(w.type) rows of \(n)")
        }
        if let hit = done[vdt.rawValue] {
            activations.append((hit.0, hit.1))
            continue
        }
        let pointer: UnsafeRawPointer
        if vdt == .f32 {
            pointer = UnsafeRawPointer(x)
        } else {
            let buf = scratch.scratch(for: vdt).reserve(rowBytes * batch)
            for b in 0..<batch {
                _ = arbor_quantize_activation_row(vdt.rawValue, x + b * n, buf + b * rowBytes, Int64(n))
            }
            pointer = UnsafeRawPointer(buf)
        }
        done[vdt.rawValue] = (pointer, rowBytes)
        activations.append((pointer, rowBytes))
    }

    // Tasks of about equal row counts across all matrices, ~8 per thread for dynamic balance.
    let totalRows = ws.reduce(0) { $0 + $1.rows }
    let perTask = max(8, (totalRows + pool.threads * 8 - 1) / (pool.threads * 8))
    var tasks: [(matrix: Int, r0: Int, r1: Int)] = []
    for (i, w) in ws.enumerated() {
        let step = w.taskRows(perTask)
        var r = 0
        while r < w.rows {
            tasks.append((i, r, min(w.rows, r + step)))
            r += step
        }
    }
    pool.parallelFor(tasks.count) { t in
        let task = tasks[t]
        let w = ws[task.matrix], act = activations[task.matrix]
        w.multiply(rows: task.r0, task.r1, acts: act.pointer, actRowBytes: act.rowBytes, batch: batch, into: ys[task.matrix])
    }
}
