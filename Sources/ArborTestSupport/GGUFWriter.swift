import ArborGGUF
import Foundation

/// Builds GGUF files (version 2 or 3) byte by byte, for hermetic tests.
///
/// Everything a GGUF can hold can be written: metadata of every value type (nested arrays
/// included), tensors of any `GGMLType` with raw bytes or encoded from floats, and any power-of-two
/// alignment. Every field can also be corrupted on purpose, to test how readers fail.
///
/// ```swift
/// var w = GGUFWriter(version: 3)
/// w.set("general.architecture", .string("llama"))
/// w.set(.blockCount, .uint32(2))                        // "llama.block_count"
/// w.set("tokenizer.ggml.tokens", .array(.string(["a", "b"])))
/// w.addTensor("x", dims: [4, 2], type: .f32, floats: (0..<8).map(Float.init))
/// try TemporaryDirectory.with { dir in
///     let url = try w.write(to: dir.url)                // dir/model.gguf
///     let file = try GGUFFile(path: url.path)
/// }
/// let inMemory = try w.parse()                           // no file at all
/// ```
///
/// Layout: header (magic, version, tensor count, metadata count), the metadata, the tensor infos,
/// zero padding to `alignment`, then each tensor's bytes at the next multiple of `alignment`,
/// each padded to `alignment` like ggml and gguf-py do. Versions 2 and 3 share this layout;
/// any other version number is written with it too (readers must reject it before anything else).
///
/// Corruption knobs: `magic`, `version`, `tensorCountOverride`, `metadataCountOverride`,
/// `truncateAt`, `patches`, and on each entry (`Metadata`, `Tensor`) overrides for lengths, type
/// tags, dimension counts and offsets; reach entries with `modifyMetadata(_:_:)` and
/// `modifyTensor(_:_:)`. `layout()` tells where every part landed, to cut or patch precisely.
public struct GGUFWriter: Sendable {
    /// "GGUF" read as a little-endian `UInt32`.
    public static let ggufMagic: UInt32 = 0x4655_4747

    /// One metadata entry as it will be written. The `...Override` fields corrupt it on purpose.
    public struct Metadata: Sendable {
        /// The key's bytes (UTF-8 unless deliberately invalid).
        public var key: [UInt8]
        public var value: GGUFValue
        /// Written instead of the key's byte length.
        public var keyLengthOverride: UInt64?
        /// Written instead of the value's type tag (e.g. 13 or 99: not a `GGUFValueType`).
        public var typeOverride: UInt32?
        /// A string value: written instead of its byte length. An array: instead of its element
        /// count (of the outermost array).
        public var lengthOverride: UInt64?
        /// An array value: written instead of its element type tag.
        public var elementTypeOverride: UInt32?

        public init(key: [UInt8], value: GGUFValue) {
            self.key = key
            self.value = value
        }

        /// The key as a string (invalid UTF-8 repaired with U+FFFD).
        public var keyString: String { String(decoding: key, as: UTF8.self) }
    }

    /// One tensor as it will be written. The `...Override` fields corrupt it on purpose.
    public struct Tensor: Sendable {
        /// The name's bytes (UTF-8 unless deliberately invalid).
        public var name: [UInt8]
        /// ggml order: `dims[0]` is the contiguous (row) dimension. Written as given, even 0.
        public var dims: [UInt64]
        public var type: GGMLType
        /// The data, written as given at the tensor's place in the data section. A size that does
        /// not match `dims` and `type` makes a corrupt file.
        public var data: [UInt8]
        /// Written instead of the name's byte length.
        public var nameLengthOverride: UInt64?
        /// Written instead of `dims.count` (the dims written stay `dims`).
        public var dimCountOverride: UInt32?
        /// Written instead of `type.rawValue` (e.g. 4, 5 or 1000: not a `GGMLType`).
        public var typeOverride: UInt32?
        /// Written instead of the real offset (relative to the data section). The data itself
        /// stays where the layout put it.
        public var offsetOverride: UInt64?

        public init(name: [UInt8], dims: [UInt64], type: GGMLType, data: [UInt8]) {
            self.name = name
            self.dims = dims
            self.type = type
            self.data = data
        }

        /// The name as a string (invalid UTF-8 repaired with U+FFFD).
        public var nameString: String { String(decoding: name, as: UTF8.self) }
    }

    /// Bytes to overwrite after the file is laid out (applied before `truncateAt`).
    public struct Patch: Sendable {
        public var offset: Int
        public var bytes: [UInt8]
        public init(offset: Int, bytes: [UInt8]) {
            self.offset = offset
            self.bytes = bytes
        }
    }

    /// Where the parts of the file landed. Offsets are absolute unless noted.
    public struct Layout: Sendable, Equatable {
        /// Where each metadata entry (its key length) starts, in `metadata` order.
        public var metadataOffsets: [Int] = []
        /// Where each tensor info (its name length) starts, in `tensors` order.
        public var tensorInfoOffsets: [Int] = []
        /// End of the tensor infos.
        public var headerSize = 0
        /// Start of the data section (`headerSize` rounded up to the alignment).
        public var dataOffset = 0
        /// Where each tensor's data was placed, relative to `dataOffset`, in `tensors` order.
        public var tensorDataOffsets: [Int] = []
        /// End of the last tensor's data (before its trailing padding), absolute.
        public var dataEnd = 0
        /// The file size (after `truncateAt`).
        public var fileSize = 0
    }

    /// Written after the magic. Readers accept 2 and 3.
    public var version: UInt32
    /// Data alignment used for the layout. When not 32 and no `general.alignment` entry exists,
    /// one (`u32`) is appended to the metadata on writing (see `writesAlignmentKey`).
    public var alignment: Int
    /// Append `general.alignment` automatically when `alignment` is not 32. Turn off to lay out
    /// with one alignment while the file claims another (or none).
    public var writesAlignmentKey = true
    /// Metadata in file order.
    public var metadata: [Metadata] = []
    /// Tensors in file order (infos and data both follow this order).
    public var tensors: [Tensor] = []

    // Whole-file corruption knobs.

    /// Written first; anything but `ggufMagic` makes a non-GGUF file.
    public var magic: UInt32 = GGUFWriter.ggufMagic
    /// Written instead of `tensors.count`.
    public var tensorCountOverride: UInt64?
    /// Written instead of the number of metadata entries.
    public var metadataCountOverride: UInt64?
    /// Keep only the first `truncateAt` bytes.
    public var truncateAt: Int?
    /// Byte overwrites applied to the finished file (past-the-end bytes are dropped).
    public var patches: [Patch] = []

    /// An empty file: no metadata, no tensors.
    public init(version: UInt32 = 3, alignment: Int = 32) {
        precondition(alignment > 0, "alignment must be positive")
        self.version = version
        self.alignment = alignment
    }

    // MARK: Metadata

    /// Set a metadata value: replaces an existing entry with the same key in place, else appends.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        let bytes = Array(key.utf8)
        if let i = metadata.firstIndex(where: { $0.key == bytes }) {
            metadata[i] = Metadata(key: bytes, value: value)
        } else {
            metadata.append(Metadata(key: bytes, value: value))
        }
    }

    /// Set a well-known key; `{arch}` keys use the `general.architecture` already set.
    public mutating func set(_ key: GGUFKey, _ value: GGUFValue) {
        let arch = self[GGUFKey.architecture.rawValue]?.string
        precondition(arch != nil || !key.rawValue.hasPrefix("{arch}"),
                     "set general.architecture before \(key.rawValue)")
        set(key.name(architecture: arch ?? ""), value)
    }

    /// Append an entry even if the key exists (to write duplicate keys).
    public mutating func append(_ key: String, _ value: GGUFValue) {
        metadata.append(Metadata(key: Array(key.utf8), value: value))
    }

    /// Append an entry whose key is arbitrary bytes (e.g. invalid UTF-8).
    public mutating func append(rawKey: [UInt8], _ value: GGUFValue) {
        metadata.append(Metadata(key: rawKey, value: value))
    }

    /// Remove every entry with this key.
    public mutating func remove(_ key: String) {
        let bytes = Array(key.utf8)
        metadata.removeAll { $0.key == bytes }
    }

    /// The value of the first entry with this key.
    public subscript(key: String) -> GGUFValue? {
        let bytes = Array(key.utf8)
        return metadata.first { $0.key == bytes }?.value
    }

    /// Edit the first entry with this key in place (to set its overrides). Traps if absent.
    public mutating func modifyMetadata(_ key: String, _ body: (inout Metadata) -> Void) {
        let bytes = Array(key.utf8)
        guard let i = metadata.firstIndex(where: { $0.key == bytes }) else {
            preconditionFailure("no metadata key '\(key)'")
        }
        body(&metadata[i])
    }

    // MARK: Tensors

    /// Append a tensor with raw data (written as given; see `Tensor.data`).
    public mutating func addTensor(_ name: String, dims: [Int], type: GGMLType, data: [UInt8]) {
        tensors.append(Tensor(name: Array(name.utf8), dims: dims.map { UInt64($0) }, type: type, data: data))
    }

    /// Append a tensor encoded from floats (`dims` in ggml order, `floats` row-major with `dims[0]`
    /// contiguous). Types: see `encode(_:as:)`. Traps if the count or type does not fit.
    public mutating func addTensor(_ name: String, dims: [Int], type: GGMLType = .f32, floats: [Float]) {
        precondition(dims.reduce(1, *) == floats.count, "\(name): \(floats.count) floats for dims \(dims)")
        precondition(dims.first.map { $0 % type.blockSize == 0 } ?? true,
                     "\(name): row length \(dims[0]) is not a multiple of the \(type) block size \(type.blockSize)")
        guard let data = Self.encode(floats, as: type) else {
            preconditionFailure("\(name): cannot encode floats as \(type); pass data: instead")
        }
        addTensor(name, dims: dims, type: type, data: data)
    }

    /// Append a tensor of `type` filled with zero bytes (the right size for `dims`).
    public mutating func addZeroTensor(_ name: String, dims: [Int], type: GGMLType = .f32) {
        guard let size = type.byteCount(elements: dims.reduce(1, *)) else {
            preconditionFailure("\(name): \(dims) is not a whole number of \(type) blocks")
        }
        addTensor(name, dims: dims, type: type, data: [UInt8](repeating: 0, count: size))
    }

    /// Edit the first tensor with this name in place (to set its overrides). Traps if absent.
    public mutating func modifyTensor(_ name: String, _ body: (inout Tensor) -> Void) {
        let bytes = Array(name.utf8)
        guard let i = tensors.firstIndex(where: { $0.name == bytes }) else {
            preconditionFailure("no tensor '\(name)'")
        }
        body(&tensors[i])
    }

    // MARK: Output

    /// The file's bytes.
    public func bytes() -> [UInt8] { build().bytes }

    /// Where everything lands in `bytes()`.
    public func layout() -> Layout { build().layout }

    /// Write the file as `name` inside `directory`, returning its URL.
    @discardableResult
    public func write(to directory: URL, name: String = "model.gguf") throws -> URL {
        let url = directory.appendingPathComponent(name)
        try write(toFile: url)
        return url
    }

    /// Write the file as `name` inside a temporary directory, returning its URL.
    @discardableResult
    public func write(to directory: TemporaryDirectory, name: String = "model.gguf") throws -> URL {
        try write(to: directory.url, name: name)
    }

    /// Write the file at exactly `url` (replacing it).
    public func write(toFile url: URL) throws {
        try Data(bytes()).write(to: url)
    }

    /// Parse the bytes in memory with `GGUFFile` (no file is written); `path` labels errors.
    public func parse(path: String = "memory.gguf") throws(GGUFError) -> GGUFFile {
        try GGUFFile(copying: bytes(), path: path)
    }

    /// The bytes and where everything landed.
    public func build() -> (bytes: [UInt8], layout: Layout) {
        var entries = metadata
        if writesAlignmentKey, alignment != 32,
           !entries.contains(where: { $0.key == Array(GGUFKey.alignment.rawValue.utf8) }) {
            entries.append(Metadata(key: Array(GGUFKey.alignment.rawValue.utf8), value: .uint32(UInt32(alignment))))
        }
        var out = ByteWriter()
        var layout = Layout()
        out.u32(magic)
        out.u32(version)
        out.u64(tensorCountOverride ?? UInt64(tensors.count))
        out.u64(metadataCountOverride ?? UInt64(entries.count))
        for e in entries {
            layout.metadataOffsets.append(out.count)
            out.u64(e.keyLengthOverride ?? UInt64(e.key.count))
            out.raw(e.key)
            out.u32(e.typeOverride ?? e.value.type.rawValue)
            out.value(e.value, lengthOverride: e.lengthOverride, elementTypeOverride: e.elementTypeOverride)
        }

        // Data placement: each tensor at the next multiple of the alignment.
        var cursor = 0
        for t in tensors {
            cursor = Self.alignUp(cursor, alignment)
            layout.tensorDataOffsets.append(cursor)
            cursor += t.data.count
        }
        for (t, placed) in zip(tensors, layout.tensorDataOffsets) {
            layout.tensorInfoOffsets.append(out.count)
            out.u64(t.nameLengthOverride ?? UInt64(t.name.count))
            out.raw(t.name)
            out.u32(t.dimCountOverride ?? UInt32(t.dims.count))
            for d in t.dims { out.u64(d) }
            out.u32(t.typeOverride ?? t.type.rawValue)
            out.u64(t.offsetOverride ?? UInt64(placed))
        }
        layout.headerSize = out.count
        layout.dataOffset = Self.alignUp(out.count, alignment)
        out.zeros(layout.dataOffset - out.count)
        for (t, placed) in zip(tensors, layout.tensorDataOffsets) {
            out.zeros(layout.dataOffset + placed - out.count)
            out.raw(t.data)
            layout.dataEnd = out.count
        }
        if tensors.isEmpty { layout.dataEnd = out.count }
        out.zeros(Self.alignUp(out.count, alignment) - out.count)

        var bytes = out.bytes
        for p in patches where p.offset >= 0 {
            for (i, b) in p.bytes.enumerated() where p.offset + i < bytes.count {
                bytes[p.offset + i] = b
            }
        }
        if let cut = truncateAt, cut < bytes.count { bytes.removeSubrange(max(cut, 0)...) }
        layout.fileSize = bytes.count
        return (bytes, layout)
    }

    static func alignUp(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    // MARK: Encoding floats

    /// Floats encoded as ggml does for `.f32`, `.f16`, `.bf16`, `.q8_0` and `.q4_0` (reference,
    /// non-SIMD quantizers: `quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), or nil for other
    /// types. The count must be a multiple of the block size for the quantized types.
    public static func encode(_ floats: [Float], as type: GGMLType) -> [UInt8]? {
        var out = ByteWriter()
        switch type {
        case .f32:
            for f in floats { out.u32(f.bitPattern) }
        case .f16:
            for f in floats { out.u16(halfBits(f)) }
        case .bf16:
            for f in floats { out.u16(bfloat16Bits(f)) }
        case .q8_0:
            guard floats.count % 32 == 0 else { return nil }
            for b in stride(from: 0, to: floats.count, by: 32) {
                let block = floats[b..<(b + 32)]
                let amax = block.reduce(Float(0)) { max($0, abs($1)) }
                let d = amax / 127
                let id: Float = d != 0 ? 1 / d : 0
                out.u16(halfBits(d))
                for x in block {
                    let q = (x * id).rounded(.toNearestOrAwayFromZero)
                    out.raw([UInt8(bitPattern: Int8(q.isNaN ? 0 : max(-128, min(127, q))))])
                }
            }
        case .q4_0:
            guard floats.count % 32 == 0 else { return nil }
            for b in stride(from: 0, to: floats.count, by: 32) {
                var amax: Float = 0, maxValue: Float = 0
                for x in floats[b..<(b + 32)] where amax < abs(x) {
                    amax = abs(x)
                    maxValue = x
                }
                let d = maxValue / -8
                let id: Float = d != 0 ? 1 / d : 0
                out.u16(halfBits(d))
                func nibble(_ x: Float) -> UInt8 {
                    let v = x * id + 8.5
                    return v.isNaN ? 0 : UInt8(max(0, min(15, v.rounded(.towardZero))))
                }
                for j in 0..<16 {
                    out.raw([nibble(floats[b + j]) | nibble(floats[b + 16 + j]) << 4])
                }
            }
        default:
            return nil
        }
        return out.bytes
    }

    /// IEEE half-precision bits, rounded to nearest even (ggml's `GGML_FP32_TO_FP16`).
    public static func halfBits(_ f: Float) -> UInt16 {
        let scaleToInf = Float(bitPattern: 0x7780_0000)   // 2^112
        let scaleToZero = Float(bitPattern: 0x0880_0000)  // 2^-110
        var base = (abs(f) * scaleToInf) * scaleToZero
        let w = f.bitPattern
        let shl1 = w &+ w
        let sign = w & 0x8000_0000
        var bias = shl1 & 0xFF00_0000
        if bias < 0x7100_0000 { bias = 0x7100_0000 }
        base = Float(bitPattern: (bias >> 1) &+ 0x0780_0000) + base
        let bits = base.bitPattern
        let expBits = (bits >> 13) & 0x0000_7C00
        let mantissaBits = bits & 0x0000_0FFF
        let nonsign = expBits &+ mantissaBits
        return UInt16(truncatingIfNeeded: (sign >> 16) | (shl1 > 0xFF00_0000 ? 0x7E00 : nonsign))
    }

    /// bfloat16 bits, rounded to nearest even (ggml's `ggml_compute_fp32_to_bf16`).
    public static func bfloat16Bits(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if u & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: (u >> 16) | 64) }
        return UInt16(truncatingIfNeeded: (u &+ (0x7FFF &+ ((u >> 16) & 1))) >> 16)
    }
}

/// Little-endian byte accumulator.
struct ByteWriter {
    var bytes: [UInt8] = []
    var count: Int { bytes.count }

    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    mutating func zeros(_ n: Int) { if n > 0 { bytes.append(contentsOf: repeatElement(0, count: n)) } }
    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func u16(_ v: UInt16) { int(v) }
    mutating func u32(_ v: UInt32) { int(v) }
    mutating func u64(_ v: UInt64) { int(v) }

    mutating func string(_ s: String, lengthOverride: UInt64? = nil) {
        let utf8 = Array(s.utf8)
        u64(lengthOverride ?? UInt64(utf8.count))
        raw(utf8)
    }

    /// A value's payload (its type tag is written by the caller).
    mutating func value(_ v: GGUFValue, lengthOverride: UInt64? = nil, elementTypeOverride: UInt32? = nil) {
        switch v {
        case let .uint8(x): int(x)
        case let .int8(x): int(x)
        case let .uint16(x): int(x)
        case let .int16(x): int(x)
        case let .uint32(x): int(x)
        case let .int32(x): int(x)
        case let .float32(x): int(x.bitPattern)
        case let .bool(x): int(UInt8(x ? 1 : 0))
        case let .string(s): string(s, lengthOverride: lengthOverride)
        case let .array(a): array(a, lengthOverride: lengthOverride, elementTypeOverride: elementTypeOverride)
        case let .uint64(x): int(x)
        case let .int64(x): int(x)
        case let .float64(x): int(x.bitPattern)
        }
    }

    /// An array: element type, count, elements (nested arrays recursively).
    mutating func array(_ a: GGUFArray, lengthOverride: UInt64? = nil, elementTypeOverride: UInt32? = nil) {
        u32(elementTypeOverride ?? a.elementType.rawValue)
        u64(lengthOverride ?? UInt64(a.count))
        switch a {
        case let .uint8(xs): for x in xs { int(x) }
        case let .int8(xs): for x in xs { int(x) }
        case let .uint16(xs): for x in xs { int(x) }
        case let .int16(xs): for x in xs { int(x) }
        case let .uint32(xs): for x in xs { int(x) }
        case let .int32(xs): for x in xs { int(x) }
        case let .float32(xs): for x in xs { int(x.bitPattern) }
        case let .bool(xs): for x in xs { int(UInt8(x ? 1 : 0)) }
        case let .string(xs): for x in xs { string(x) }
        case let .uint64(xs): for x in xs { int(x) }
        case let .int64(xs): for x in xs { int(x) }
        case let .float64(xs): for x in xs { int(x.bitPattern) }
        case let .array(xs): for x in xs { array(x) }
        }
    }
}
