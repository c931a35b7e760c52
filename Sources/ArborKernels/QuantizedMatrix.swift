import ArborGGUF
import CArborKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

extension GGMLType {
    /// The type activations are converted to before a dot with weights of this type (llama.cpp's
    /// `vec_dot_type`): Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K formats, F32
    /// for float weights. Nil when Arbor has no dot for the type.
    public var vecDotType: GGMLType? {
        let t = arbor_vec_dot_type(rawValue)
        return t == ARBOR_TYPE_NONE ? nil : GGMLType(rawValue: t)
    }

    /// Bytes of a row of `count` elements in this type, or nil if `count` is not a whole number
    /// of blocks or the kernels do not know the type.
    public func rowBytes(count: Int) -> Int? {
        let b = arbor_row_bytes(rawValue, Int64(count))
        return b < 0 ? nil : Int(b)
    }

    /// Bytes of one activation row of `columns` elements quantized for a dot with this weight type.
    public func activationRowBytes(columns: Int) -> Int? {
        vecDotType?.rowBytes(count: columns)
    }
}

/// A read-only view of a 2-D weight tensor in ggml layout: `rows` rows of `columns` elements
/// (`columns` is GGUF `dims[0]`, the contiguous dimension), each `rowBytes` long.
///
/// The view points into the model's memory mapping; it keeps the mapping's owner alive.
public struct QuantizedMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    public let data: UnsafeRawPointer
    public let rowBytes: Int
    /// Whatever owns `data` (the GGUFFile for a tensor view), retained for the view's lifetime.
    public let owner: AnyObject?
    /// The same rows regrouped 8 at a time for the x8 kernels (`interleavedForMatmul()`), or nil.
    /// When set, `matmul` reads this copy: always for Q4_K, for batches of 2 or more for Q6_K.
    public let interleaved: UnsafeRawPointer?
    private let interleavedStorage: InterleavedRows?

    /// A view of a tensor of `file`. Tensors of more than two dimensions are viewed as
    /// `dims[1] × dims[2] × ...` rows. Throws `unsupportedTensorType` for types without a dot.
    public init(file: GGUFFile, info: GGUFTensorInfo) throws(GGUFError) {
        guard info.type.isSupported, info.type.vecDotType != nil,
              info.type.rowBytes(count: info.rowLength) == info.rowBytes
        else {
            throw .unsupportedTensorType(path: file.path, tensor: info.name, type: info.type)
        }
        let bytes = file.data(of: info)
        self.type = info.type
        self.rows = info.rowCount
        self.columns = info.rowLength
        self.rowBytes = info.rowBytes
        self.data = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 0x10)!
        self.owner = file
        self.interleaved = nil
        self.interleavedStorage = nil
    }

    /// A view of the tensor called `name`.
    public init(file: GGUFFile, name: String) throws(GGUFError) {
        try self.init(file: file, info: try file.tensorInfo(name))
    }

    /// A view of raw ggml-layout bytes (tests, synthetic models). `data` must hold
    /// `rows × rowBytes` bytes and stay valid while the view is used (`owner` can keep it alive).
    public init(type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer, owner: AnyObject? = nil) {
        guard let rb = type.rowBytes(count: columns), type.vecDotType != nil else {
            preconditionFailure("QuantizedMatrix: \(type) rows of \(columns) elements are not supported")
        }
        precondition(rows >= 0)
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = rb
        self.data = data
        self.owner = owner
        self.interleaved = nil
        self.interleavedStorage = nil
    }

    private init(_ m: QuantizedMatrix, interleaved storage: InterleavedRows) {
        type = m.type
        rows = m.rows
        columns = m.columns
        rowBytes = m.rowBytes
        data = m.data
        owner = m.owner
        interleaved = UnsafeRawPointer(storage.pointer)
        interleavedStorage = storage
    }

    /// This matrix with an interleaved copy for the x8 kernels (8 rows per 512-bit vector; see
    /// x8.c) where the build has them and the matrix is Q4_K or Q6_K with a multiple of 8 rows, else
    /// `self` unchanged. For weights used through `matmul`; results are the same for any batch.
    ///
    /// Q4_K: the x8 kernel serves every batch and differs from the row kernel in rounding (a
    /// different, equally exact summation). `matmul` reads only the copy, so the pages of the
    /// original in a file mapping are handed back (`MADV_DONTNEED`): resident memory stays about
    /// the model's size. Anything that still reads `data` (an embedding lookup of tied weights)
    /// faults them back in from the page cache.
    ///
    /// Q6_K: the x8 kernel is bit-identical to the row kernel and faster from 2 activation rows
    /// on, but slower for one (decode), so it serves batches and the original rows stay for
    /// single tokens: the copy costs the matrix's size again in memory.
    public func interleavedForMatmul() -> QuantizedMatrix {
        guard interleaved == nil, type == .q4_K || type == .q6_K, arbor_x8_available() != 0 else { return self }
        let q4 = type == .q4_K
        let bytes = q4 ? arbor_q4_K_x8_bytes(Int64(rows), Int64(columns)) : arbor_q6_K_x8_bytes(Int64(rows), Int64(columns))
        guard bytes > 0 else { return self }
        guard let storage = InterleavedRows(byteCount: Int(bytes)) else { return self }
        // Packing reads and writes the whole matrix once: split over the cores, it adds about
        // 0.1 s to loading the 1.5B target.
        let groups = rows / 8, chunks = min(groups, 16)
        let status = UnsafeMutableBufferPointer<Int32>.allocate(capacity: chunks)
        defer { status.deallocate() }
        // Addresses cross into the concurrent closure as integers: each chunk writes its own
        // groups of the copy and its own status slot, and concurrentPerform returns after all.
        let src = Int(bitPattern: data), dst = Int(bitPattern: storage.pointer), out = Int(bitPattern: status.baseAddress)
        let rb = rowBytes, n = Int64(columns)
        DispatchQueue.concurrentPerform(iterations: chunks) { k in
            let g0 = groups * k / chunks, g1 = groups * (k + 1) / chunks
            let from = UnsafeRawPointer(bitPattern: src), to = UnsafeMutableRawPointer(bitPattern: dst)
            let rc = q4 ? arbor_q4_K_x8_pack_groups(from, rb, n, Int64(g0), Int64(g1), to)
                        : arbor_q6_K_x8_pack_groups(from, rb, n, Int64(g0), Int64(g1), to)
            UnsafeMutablePointer<Int32>(bitPattern: out)![k] = rc
        }
        guard status.allSatisfy({ $0 == 0 }) else { return self }
        if q4, owner is GGUFFile {
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let start = (Int(bitPattern: data) + page - 1) / page * page
            let end = (Int(bitPattern: data) + rows * rowBytes) / page * page
            if end > start {
                _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
            }
        }
        return QuantizedMatrix(self, interleaved: storage)
    }

    /// A copy holding only `rows` of this matrix, in that order (row i of the copy is row
    /// `rows[i]` here), interleaved for the x8 kernels like the original where it can be. For a
    /// trimmed output head (VocabTrim): the copy is scored instead of the whole vocabulary.
    public func selectingRows(_ rows: [Int]) -> QuantizedMatrix {
        precondition(rows.allSatisfy { $0 >= 0 && $0 < self.rows }, "selectingRows: a row is out of range")
        guard let storage = InterleavedRows(byteCount: rows.count * rowBytes) else {
            preconditionFailure("selectingRows: cannot allocate \(rows.count * rowBytes) bytes")
        }
        for (i, r) in rows.enumerated() {
            (storage.pointer + i * rowBytes).copyMemory(from: data + r * rowBytes, byteCount: rowBytes)
        }
        let copy = QuantizedMatrix(type: type, rows: rows.count, columns: columns, data: UnsafeRawPointer(storage.pointer), owner: storage)
        return interleaved == nil ? copy : copy.interleavedForMatmul()
    }

    /// y[b * rows + r] for weight rows r in r0..<r1 and `batch` activation rows (already
    /// quantized to the vec-dot type, `actRowBytes` apart). With an interleaved copy r0 must be a
    /// multiple of 8.
    @inline(__always)
    func multiply(rows r0: Int, _ r1: Int, acts: UnsafeRawPointer, actRowBytes: Int, batch: Int, into y: UnsafeMutablePointer<Float>) {
        if let x8 = interleaved, type == .q4_K || batch > 1 {
            let g0 = Int64(r0 / 8), g1 = Int64((r1 + 7) / 8)
            if type == .q4_K {
                _ = arbor_matmul_q4_K_x8(Int64(columns), x8, g0, g1, acts, actRowBytes, Int64(batch), y, Int64(rows))
            } else {
                _ = arbor_matmul_q6_K_x8(Int64(columns), x8, g0, g1, acts, actRowBytes, Int64(batch), y, Int64(rows))
            }
        } else {
            _ = arbor_matmul_rows(type.rawValue, Int64(columns), data, rowBytes, Int64(r0), Int64(r1), acts, actRowBytes,
                                  Int64(batch), y, Int64(rows))
        }
    }

    /// Rows per parallel task: at least `minimum`, a multiple of 8 with an interleaved copy.
    func taskRows(_ minimum: Int) -> Int {
        interleaved == nil ? minimum : (minimum + 7) / 8 * 8
    }

    /// Start of row `r`.
    @inlinable
    public func row(_ r: Int) -> UnsafeRawPointer {
        data + r * rowBytes
    }
}

/// The memory of an interleaved copy: an anonymous mapping, in 2 MB pages where the kernel gives
/// them (`MADV_HUGEPAGE`: fewer page faults while packing, fewer TLB misses while streaming it),
/// unmapped with the last matrix using it.
final class InterleavedRows: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    init?(byteCount: Int) {
        let size = max(byteCount, 1)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            return nil
        }
        _ = madvise(p, size, MADV_HUGEPAGE)
        pointer = p
        self.byteCount = size
    }

    deinit { munmap(pointer, byteCount) }
}
