import ArborGGUF
import CArborKernels

/// Reusable memory for `matmul`'s quantized activations: grows to the largest request and is
/// then reused, so a warmed-up forward pass does not allocate. Not for concurrent matmuls.
public final class MatmulScratch: @unchecked Sendable {
    private var buffer: UnsafeMutableRawPointer?
    private var capacity = 0

    public init() {}

    deinit { buffer?.deallocate() }

    /// At least `bytes` bytes, 64-byte aligned; contents are not preserved across growth.
    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity || buffer == nil {
            buffer?.deallocate()
            capacity = max(bytes, capacity * 3 / 2, 64)
            buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        }
        return buffer!
    }
}

/// y = x · Wᵀ for a batch: `y[b * w.rows + r] = dot(w row r, x row b)`, with `x` holding `batch`
/// rows of `w.columns` floats and `y` room for `batch × w.rows`.
///
/// Like llama.cpp, each activation row is first quantized to the weight's vec-dot type (once per
/// row, independent of the other rows); then the weight rows are split over the pool's threads and
/// every weight row is dotted with all the activation rows. A row's result depends only on its
/// weight row and its own activation row, so it is bit-identical whatever `batch` it is part of.
public func matmul(
    _ w: QuantizedMatrix, _ x: UnsafePointer<Float>, batch: Int, _ y: UnsafeMutablePointer<Float>,
    scratch: MatmulScratch, pool: ThreadPool
) {
    precondition(batch >= 0, "matmul: negative batch")
    guard batch > 0, w.rows > 0 else { return }
    guard let vdt = w.type.vecDotType, let actRowBytes = vdt.rowBytes(count: w.columns) else {
        preconditionFailure("matmul: no dot for \(w.type) rows of \(w.columns)")
    }
    let n = w.columns
    let acts: UnsafeRawPointer
    if vdt == .f32 {
        acts = UnsafeRawPointer(x)
    } else {
        let buf = scratch.reserve(actRowBytes * batch)
        if batch >= 4 && pool.threads > 1 {
            pool.parallelFor(batch) { b in
                _ = arbor_quantize_activation_row(vdt.rawValue, x + b * n, buf + b * actRowBytes, Int64(n))
            }
        } else {
            for b in 0..<batch {
                _ = arbor_quantize_activation_row(vdt.rawValue, x + b * n, buf + b * actRowBytes, Int64(n))
            }
        }
        acts = UnsafeRawPointer(buf)
    }

    // About 8 tasks per thread (dynamic balance when a core is busy elsewhere), at least 8 rows each.
    let rows = w.rows
    let perTask = w.taskRows(max(8, (rows + pool.threads * 8 - 1) / (pool.threads * 8)))
    let tasks = (rows + perTask - 1) / perTask
    pool.parallelFor(tasks) { t in
        let r0 = t * perTask, r1 = min(rows, r0 + perTask)
        w.multiply(rows: r0, r1, acts: acts, actRowBytes: actRowBytes, batch: batch, into: y)
    }
}

/// Dequantizes row `row` of `w` (`w.columns` floats) into `into`: an embedding lookup.
/// Bit-identical to ggml's (and gguf-py's) dequantization.
public func dequantizeRow(_ w: QuantizedMatrix, row: Int, into: UnsafeMutablePointer<Float>) {
    precondition(row >= 0 && row < w.rows, "dequantizeRow: row \(row) out of 0..<\(w.rows)")
    let rc = arbor_dequantize_row(w.type.rawValue, w.row(row), into, Int64(w.columns))
    precondition(rc == 0, "dequantizeRow: cannot dequantize \(w.type)")
}

/// Dequantizes `count` elements (a whole number of blocks) of ggml-layout `data`.
public func dequantize(type: GGMLType, data: UnsafeRawPointer, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buf, initialized in
        if count > 0 {
            let rc = arbor_dequantize_row(type.rawValue, data, buf.baseAddress!, Int64(count))
            precondition(rc == 0, "dequantize: cannot dequantize \(count) elements of \(type)")
        }
        initialized = count
    }
}

/// Quantizes `values` (a whole number of blocks) to `type` in ggml layout. Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q8_1, Q8_K, F16 and BF16 use ggml's reference quantizers (same bytes); Q4_K, Q5_K and Q6_K
/// a simple min/max quantizer (valid blocks, not ggml's error-minimising search). For tests and
/// synthetic models; inference quantizes activations inside `matmul`.
public func quantize(_ values: [Float], to type: GGMLType) -> [UInt8] {
    guard let bytes = type.rowBytes(count: values.count) else {
        preconditionFailure("quantize: \(values.count) elements cannot be stored as \(type)")
    }
    var out = [UInt8](repeating: 0, count: bytes)
    let rc = values.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBytes { dst in
            arbor_quantize_row(type.rawValue, src.baseAddress!, dst.baseAddress!, Int64(values.count))
        }
    }
    precondition(rc == 0, "quantize: cannot quantize to \(type)")
    return out
}
