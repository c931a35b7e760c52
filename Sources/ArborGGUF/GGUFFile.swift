/// Where one tensor's data lives and how it is laid out.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    public let dims: [Int]
    public let type: GGMLType
    /// Offset from the start of the data section.
    public let offset: Int
    /// Bytes of data.
    public let byteCount: Int

    public var elementCount: Int { dims.reduce(1, *) }
    /// Elements per row (`dims[0]`).
    public var rowLength: Int { dims.first ?? 1 }
    /// Number of rows (product of the other dimensions).
    public var rowCount: Int { dims.dropFirst().reduce(1, *) }
    public var rowBytes: Int { byteCount / max(rowCount, 1) }
}

/// A parsed, memory-mapped GGUF file (versions 2 and 3).
///
/// Parsing validates everything a later read depends on: every count against the file size,
/// every tensor's type, shape, alignment and extent. Tensor bytes are then handed out in place.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    public let tensorIndex: [String: Int]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    public let mapping: MappedFile

    public var fileSize: Int { mapping.bytes.count }

    /// Open and validate a GGUF file.
    public convenience init(path: String) throws(GGUFError) {
        try self.init(mapping: MappedFile(path: path))
    }

    public init(mapping: MappedFile) throws(GGUFError) {
        self.mapping = mapping
        self.path = mapping.path
        var reader = GGUFReader(bytes: mapping.bytes, path: mapping.path)
        let magic = try reader.u32("magic")
        guard magic == 0x4655_4747 else { throw .badMagic(path: path, found: magic) }
        let version = try reader.u32("version")
        guard version == 2 || version == 3 else { throw .unsupportedVersion(path: path, version: version) }
        self.version = version

        let tensorCountOffset = reader.offset
        let tensorCount = try reader.u64("tensor count")
        let kvCountOffset = reader.offset
        let kvCount = try reader.u64("metadata count")
        // Counts are judged against fixed limits, not against the file size: a file cut short
        // must report truncation, not an absurd count. Memory reserved up front is bounded by
        // what the rest of the file could hold (a tensor info takes at least 8 (name length) +
        // 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes, a key/value at least 8 + 4 + 1).
        guard tensorCount <= GGUFLimits.maxTensorCount else {
            throw .absurdCount(path: path, offset: tensorCountOffset, what: "tensor count", value: tensorCount)
        }
        guard kvCount <= GGUFLimits.maxMetadataCount else {
            throw .absurdCount(path: path, offset: kvCountOffset, what: "metadata count", value: kvCount)
        }

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(min(Int(kvCount), reader.remaining / 13))
        metadata.reserveCapacity(min(Int(kvCount), reader.remaining / 13))
        for _ in 0..<kvCount {
            let key = try reader.string("metadata key")
            let value = try reader.value(key: key)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .duplicateKey(path: path, key: key)
            }
            keys.append(key)
        }
        self.metadataKeys = keys
        self.metadata = metadata

        var alignment = 32
        if let value = metadata[GGUFKey.alignment.rawValue] {
            // Any integer type is accepted (ggml writes u32); bools, floats and strings are not.
            let a: Int? = value.bool == nil ? value.int : nil
            guard let a, a > 0, a <= 65536, a & (a - 1) == 0 else {
                let reported: UInt64 = switch value {
                case let .uint64(v): v
                case let .int64(v): UInt64(bitPattern: v)
                default: UInt64(truncatingIfNeeded: a ?? 0)
                }
                throw .badAlignment(path: path, alignment: reported)
            }
            alignment = a
        }
        self.alignment = alignment

        var infos: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        infos.reserveCapacity(min(Int(tensorCount), reader.remaining / 32))
        index.reserveCapacity(min(Int(tensorCount), reader.remaining / 32))
        for _ in 0..<tensorCount {
            let info = try reader.tensorInfo(alignment: alignment)
            guard index.updateValue(infos.count, forKey: info.name) == nil else {
                throw .duplicateTensor(path: path, name: info.name)
            }
            infos.append(info)
        }
        self.tensors = infos
        self.tensorIndex = index

        let headerEnd = reader.offset
        let dataOffset = (headerEnd + alignment - 1) / alignment * alignment
        self.dataOffset = dataOffset
        try Self.validateExtents(infos, dataOffset: dataOffset, alignment: alignment, fileSize: mapping.bytes.count, path: path)
    }

    /// Every tensor must lie inside the file. A file whose tensors are packed one after another but
    /// whose tail is missing is reported as truncated; a tensor pointing elsewhere as outside.
    private static func validateExtents(
        _ infos: [GGUFTensorInfo], dataOffset: Int, alignment: Int, fileSize: Int, path: String
    ) throws(GGUFError) {
        guard !infos.isEmpty else { return }
        let available = fileSize - dataOffset
        var packedEnd = 0
        var packed = true
        for info in infos.sorted(by: { $0.offset < $1.offset }) {
            if info.offset != (packedEnd + alignment - 1) / alignment * alignment { packed = false }
            packedEnd = info.offset + info.byteCount
        }
        if packed && packedEnd > available {
            throw .truncatedData(path: path, expectedSize: dataOffset + packedEnd, fileSize: fileSize)
        }
        for info in infos where info.offset > available || info.byteCount > available - info.offset {
            throw .tensorOutsideFile(
                path: path, tensor: info.name, offset: UInt64(info.offset), size: info.byteCount, fileSize: fileSize)
        }
    }

    // MARK: Tensors

    public func tensorInfo(_ name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let i = tensorIndex[name] else { throw .missingTensor(path: path, name: name) }
        return tensors[i]
    }

    public func hasTensor(_ name: String) -> Bool { tensorIndex[name] != nil }

    /// The tensor's bytes, in place in the mapping (valid while this file is alive).
    public func data(of info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping.bytes[(dataOffset + info.offset)..<(dataOffset + info.offset + info.byteCount)])
    }

    /// Total bytes of all tensor data.
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}

/// Fixed sanity limits. A value beyond one is `GGUFError.absurdCount` (or a bad shape) whatever
/// the file size; a value within them that the file is too short for is truncation.
public enum GGUFLimits {
    /// Real models have hundreds to a few thousand tensors.
    public static let maxTensorCount: UInt64 = 1 << 24
    /// Real models have tens of metadata entries.
    public static let maxMetadataCount: UInt64 = 1 << 24
    /// Longest key or string value (chat templates are tens of kilobytes).
    public static let maxStringLength: UInt64 = 1 << 30
    /// Longest metadata array (vocabularies are a few hundred thousand entries).
    public static let maxArrayLength: UInt64 = 1 << 32
    /// Most elements in one tensor (and in any one dimension); keeps byte sizes far from overflow.
    public static let maxTensorElements = 1 << 50
    /// Deepest array nesting (an array of arrays is depth 2).
    public static let maxArrayNesting = 8
}

/// A bounds-checked little-endian cursor over the header bytes.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0
    static let maxNesting = GGUFLimits.maxArrayNesting

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - offset }

    mutating func need(_ n: Int, _ what: String) throws(GGUFError) {
        guard n <= remaining else { throw .truncatedHeader(path: path, offset: offset, reading: what) }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, what)
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func u32(_ what: String) throws(GGUFError) -> UInt32 { try load(UInt32.self, what) }
    mutating func u64(_ what: String) throws(GGUFError) -> UInt64 { try load(UInt64.self, what) }

    /// A length-prefixed string; a length beyond the file is absurd, beyond the rest is truncation.
    mutating func string(_ what: String) throws(GGUFError) -> String {
        let at = offset
        let length = try u64("length of \(what)")
        guard length <= GGUFLimits.maxStringLength else {
            throw .absurdCount(path: path, offset: at, what: "length of \(what)", value: length)
        }
        try need(Int(length), what)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(length))])
        guard let s = Self.validUTF8(raw) else {
            throw .invalidString(path: path, offset: offset)
        }
        offset += Int(length)
        return s
    }

    /// The bytes as a string, or nil if they are not valid UTF-8.
    static func validUTF8(_ raw: UnsafeRawBufferPointer) -> String? {
        let units = raw.bindMemory(to: UInt8.self)
        // Fast path: ASCII needs no validation (almost every key and most tokens).
        if units.allSatisfy({ $0 < 0x80 }) { return String(decoding: units, as: UTF8.self) }
        #if compiler(>=6.0)
        if #available(macOS 15, iOS 18, *) {
            return String(validating: units, as: UTF8.self)
        }
        #endif
        // Decoding repairs invalid sequences with U+FFFD, so a lossless round trip means valid.
        let s = String(decoding: units, as: UTF8.self)
        return s.utf8.elementsEqual(units) ? s : nil
    }

    mutating func value(key: String) throws(GGUFError) -> GGUFValue {
        let at = offset
        let raw = try u32("type of '\(key)'")
        guard let type = GGUFValueType(rawValue: raw) else {
            throw .invalidValueType(path: path, offset: at, key: key, rawType: raw)
        }
        return try value(of: type, key: key)
    }

    mutating func value(of type: GGUFValueType, key: String) throws(GGUFError) -> GGUFValue {
        let what = "value of '\(key)'"
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, what))
        case .int8: return .int8(try load(Int8.self, what))
        case .uint16: return .uint16(try load(UInt16.self, what))
        case .int16: return .int16(try load(Int16.self, what))
        case .uint32: return .uint32(try load(UInt32.self, what))
        case .int32: return .int32(try load(Int32.self, what))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, what)))
        case .bool: return .bool(try load(UInt8.self, what) != 0)
        case .string: return .string(try string(what))
        case .uint64: return .uint64(try load(UInt64.self, what))
        case .int64: return .int64(try load(Int64.self, what))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, what)))
        case .array: return .array(try array(key: key, depth: 0))
        }
    }

    mutating func array(key: String, depth: Int) throws(GGUFError) -> GGUFArray {
        guard depth < Self.maxNesting else { throw .nestingTooDeep(path: path, offset: offset, key: key) }
        let typeAt = offset
        let raw = try u32("array element type of '\(key)'")
        guard let type = GGUFValueType(rawValue: raw) else {
            throw .invalidValueType(path: path, offset: typeAt, key: key, rawType: raw)
        }
        let countAt = offset
        let count = try u64("array length of '\(key)'")
        // Every element takes at least one byte (strings and arrays at least eight).
        let minSize: UInt64 = switch type {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8
        case .array: 12
        }
        guard count <= GGUFLimits.maxArrayLength else {
            throw .absurdCount(path: path, offset: countAt, what: "array length of '\(key)'", value: count)
        }
        let n = Int(count)
        // Reserve only what the rest of the file could hold; a short file then ends in truncation.
        let reserve = min(n, remaining / Int(minSize))
        let what = "array '\(key)'"
        switch type {
        case .uint8: return .uint8(try fixedArray(UInt8.self, n, what))
        case .int8: return .int8(try fixedArray(Int8.self, n, what))
        case .uint16: return .uint16(try fixedArray(UInt16.self, n, what))
        case .int16: return .int16(try fixedArray(Int16.self, n, what))
        case .uint32: return .uint32(try fixedArray(UInt32.self, n, what))
        case .int32: return .int32(try fixedArray(Int32.self, n, what))
        case .float32: return .float32(try fixedArray(UInt32.self, n, what).map { Float(bitPattern: $0) })
        case .bool: return .bool(try fixedArray(UInt8.self, n, what).map { $0 != 0 })
        case .uint64: return .uint64(try fixedArray(UInt64.self, n, what))
        case .int64: return .int64(try fixedArray(Int64.self, n, what))
        case .float64: return .float64(try fixedArray(UInt64.self, n, what).map { Double(bitPattern: $0) })
        case .string:
            var out: [String] = []
            out.reserveCapacity(reserve)
            for _ in 0..<n { out.append(try string("element of \(what)")) }
            return .string(out)
        case .array:
            var out: [GGUFArray] = []
            out.reserveCapacity(reserve)
            for _ in 0..<n { out.append(try array(key: key, depth: depth + 1)) }
            return .array(out)
        }
    }

    mutating func fixedArray<T: FixedWidthInteger>(_: T.Type, _ n: Int, _ what: String) throws(GGUFError) -> [T] {
        let size = MemoryLayout<T>.size * n
        try need(size, what)
        let base = offset
        let out = [T](unsafeUninitializedCapacity: n) { buf, initialized in
            for i in 0..<n {
                buf[i] = T(littleEndian: bytes.loadUnaligned(fromByteOffset: base + i * MemoryLayout<T>.size, as: T.self))
            }
            initialized = n
        }
        offset += size
        return out
    }

    mutating func tensorInfo(alignment: Int) throws(GGUFError) -> GGUFTensorInfo {
        let name = try string("tensor name")
        let nDimsAt = offset
        let nDims = try u32("dimension count of tensor '\(name)'")
        guard nDims >= 1, nDims <= 4 else {
            throw .badTensorShape(
                path: path, tensor: name, dims: [],
                reason: "\(nDims) dimensions at byte \(nDimsAt) (GGUF allows 1 to 4)")
        }
        var rawDims: [UInt64] = []
        for _ in 0..<nDims { rawDims.append(try u64("shape of tensor '\(name)'")) }
        let typeRaw = try u32("type of tensor '\(name)'")
        let tensorOffset = try u64("offset of tensor '\(name)'")
        guard let type = GGMLType(rawValue: typeRaw) else {
            throw .unknownTensorType(path: path, tensor: name, rawType: typeRaw)
        }
        var elements = 1
        for d in rawDims {
            guard d >= 1, d <= UInt64(GGUFLimits.maxTensorElements) else {
                throw .badTensorShape(path: path, tensor: name, dims: rawDims, reason: "dimension \(d) out of range")
            }
            // Judged against a fixed limit (not the file size) so that a truncated file reports
            // truncation; the extent check against the file comes after the whole header.
            let (p, overflow) = elements.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= GGUFLimits.maxTensorElements else {
                throw .badTensorShape(path: path, tensor: name, dims: rawDims, reason: "more than 2^50 elements")
            }
            elements = p
        }
        guard Int(rawDims[0]) % type.blockSize == 0, let size = type.byteCount(elements: elements) else {
            throw .badTensorShape(
                path: path, tensor: name, dims: rawDims,
                reason: "row length \(rawDims[0]) is not a multiple of the \(type) block size \(type.blockSize)")
        }
        guard tensorOffset % UInt64(alignment) == 0 else {
            throw .misalignedTensor(path: path, tensor: name, offset: tensorOffset, alignment: alignment)
        }
        guard tensorOffset <= UInt64(Int.max / 2) else {
            throw .tensorOutsideFile(path: path, tensor: name, offset: tensorOffset, size: size, fileSize: bytes.count)
        }
        return GGUFTensorInfo(name: name, dims: rawDims.map { Int($0) }, type: type, offset: Int(tensorOffset), byteCount: size)
    }
}

extension GGUFFile {
    /// Parse bytes held in memory (a copy is kept); `path` only labels error messages.
    public convenience init(copying bytes: some Collection<UInt8>, path: String) throws(GGUFError) {
        try self.init(mapping: MappedFile(copying: bytes, path: path))
    }
}
