import ArborGGUF
import CArborKernels

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
    }

    /// Start of row `r`.
    @inlinable
    public func row(_ r: Int) -> UnsafeRawPointer {
        data + r * rowBytes
    }
}
