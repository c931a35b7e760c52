import ArborGGUF
import ArborTestSupport
import Foundation
import Testing

/// Each kind of damage gives its own, specific `GGUFError` naming the file.
@Suite("Corrupt files")
struct CorruptionTests {
    /// Where the value of metadata entry `key` starts (after its type tag) in `smallWriter()`.
    func valueOffset(_ w: GGUFWriter, _ key: String) -> Int {
        let i = w.metadata.firstIndex { $0.keyString == key }!
        return w.layout().metadataOffsets[i] + 8 + w.metadata[i].key.count + 4
    }

    // MARK: Header

    @Test("bad magic", arguments: [UInt32(0), 0x4C4D_4747 /* GGML */, 0x4747_5546 /* byte-swapped */, .max])
    func badMagic(magic: UInt32) {
        var w = smallWriter()
        w.magic = magic
        #expect(throws: GGUFError.badMagic(path: testPath, found: magic)) { try w.parse(path: testPath) }
    }

    @Test("unsupported versions", arguments: [UInt32(0), 1, 4, 0x0300_0000 /* big-endian 3 */, .max])
    func unsupportedVersion(version: UInt32) {
        var w = smallWriter()
        w.version = version
        #expect(throws: GGUFError.unsupportedVersion(path: testPath, version: version)) { try w.parse(path: testPath) }
    }

    @Test("a header cut short names what it was reading and where")
    func truncatedHeader() {
        let bytes = smallWriter().bytes()
        let cases: [(cut: Int, offset: Int, reading: String)] = [
            (0, 0, "magic"), (3, 0, "magic"), (4, 4, "version"), (7, 4, "version"),
            (12, 8, "tensor count"), (20, 16, "metadata count"),
            (24, 24, "length of metadata key"),
            (24 + 8 + 5, 32, "metadata key"),  // inside "general.architecture"
        ]
        for c in cases {
            #expect(throws: GGUFError.truncatedHeader(path: testPath, offset: c.offset, reading: c.reading)) {
                try GGUFFile(copying: bytes[..<c.cut], path: testPath)
            }
        }
    }

    @Test("tensor data cut short is truncated data, wherever the cut falls after the header")
    func truncatedData() {
        let w = smallWriter()
        let layout = w.layout()
        let needed = layout.dataEnd
        for cut in [layout.headerSize, layout.headerSize + 1, layout.dataOffset, layout.dataOffset + 100, needed - 1] {
            var t = w
            t.truncateAt = cut
            #expect(throws: GGUFError.truncatedData(path: testPath, expectedSize: needed, fileSize: cut)) {
                try t.parse(path: testPath)
            }
        }
    }

    @Test("absurd tensor and metadata counts")
    func absurdCounts() {
        for value in [GGUFLimits.maxTensorCount + 1, 1 << 40, .max] {
            var w = smallWriter()
            w.tensorCountOverride = value
            #expect(throws: GGUFError.absurdCount(path: testPath, offset: 8, what: "tensor count", value: value)) {
                try w.parse(path: testPath)
            }
            w = smallWriter()
            w.metadataCountOverride = value
            #expect(throws: GGUFError.absurdCount(path: testPath, offset: 16, what: "metadata count", value: value)) {
                try w.parse(path: testPath)
            }
        }
    }

    @Test("plausible counts and lengths that the file is too short for are truncation, not absurd")
    func plausibleButTooLarge() {
        func expectTruncated(_ w: GGUFWriter, sourceLocation: SourceLocation = #_sourceLocation) {
            var w = w
            w.truncateAt = w.layout().headerSize  // the file ends right after what was written
            guard case .truncatedHeader = parseError(w, sourceLocation: sourceLocation) else {
                Issue.record("expected truncatedHeader", sourceLocation: sourceLocation)
                return
            }
        }
        var w = smallWriter()
        w.tensorCountOverride = GGUFLimits.maxTensorCount
        expectTruncated(w)

        w = smallWriter()
        w.tensors = []
        w.metadataCountOverride = GGUFLimits.maxMetadataCount
        expectTruncated(w)

        // A string longer than what is left of the file, wherever it is.
        w = smallWriter()
        w.modifyMetadata("general.name") { $0.lengthOverride = 100_000 }
        expectTruncated(w)

        // An array longer than what is left, as the last thing in the file.
        w = smallWriter()
        w.tensors = []
        w.set("z.last", .array(.string(["a", "b"])))
        w.modifyMetadata("z.last") { $0.lengthOverride = GGUFLimits.maxArrayLength }
        expectTruncated(w)
        w.set("z.last", .array(.uint64([1, 2])))
        w.modifyMetadata("z.last") { $0.lengthOverride = GGUFLimits.maxArrayLength }
        expectTruncated(w)
    }

    @Test("absurd string lengths: keys, string values, tensor names")
    func absurdStringLength() {
        let huge = GGUFLimits.maxStringLength + 1
        var w = smallWriter()
        w.modifyMetadata("general.architecture") { $0.keyLengthOverride = huge }
        #expect(throws: GGUFError.absurdCount(path: testPath, offset: w.layout().metadataOffsets[0],
                                              what: "length of metadata key", value: huge)) {
            try w.parse(path: testPath)
        }

        w = smallWriter()
        w.modifyMetadata("general.name") { $0.lengthOverride = .max }
        #expect(throws: GGUFError.absurdCount(path: testPath, offset: valueOffset(w, "general.name"),
                                              what: "length of value of 'general.name'", value: .max)) {
            try w.parse(path: testPath)
        }

        w = smallWriter()
        w.modifyTensor("output_norm.weight") { $0.nameLengthOverride = 1 << 62 }
        #expect(throws: GGUFError.absurdCount(path: testPath, offset: w.layout().tensorInfoOffsets[1],
                                              what: "length of tensor name", value: 1 << 62)) {
            try w.parse(path: testPath)
        }
    }

    @Test("absurd array lengths")
    func absurdArrayLength() {
        for value in [GGUFLimits.maxArrayLength + 1, .max] {
            var w = smallWriter()
            w.modifyMetadata("tokenizer.ggml.tokens") { $0.lengthOverride = value }
            #expect(throws: GGUFError.absurdCount(
                path: testPath, offset: valueOffset(w, "tokenizer.ggml.tokens") + 4,
                what: "array length of 'tokenizer.ggml.tokens'", value: value)) {
                try w.parse(path: testPath)
            }
        }
    }

    @Test("unknown metadata value types, of values and of array elements", arguments: [UInt32(13), 99, .max])
    func unknownValueType(raw: UInt32) {
        var w = smallWriter()
        w.modifyMetadata("x.flag") { $0.typeOverride = raw }
        #expect(throws: GGUFError.invalidValueType(path: testPath, offset: valueOffset(w, "x.flag") - 4,
                                                   key: "x.flag", rawType: raw)) {
            try w.parse(path: testPath)
        }

        w = smallWriter()
        w.modifyMetadata("tokenizer.ggml.scores") { $0.elementTypeOverride = raw }
        #expect(throws: GGUFError.invalidValueType(path: testPath, offset: valueOffset(w, "tokenizer.ggml.scores"),
                                                   key: "tokenizer.ggml.scores", rawType: raw)) {
            try w.parse(path: testPath)
        }
    }

    @Test("arrays nested too deeply")
    func nestingTooDeep() throws {
        var w = smallWriter()
        w.set("deep", .array(nestedArray(depth: GGUFLimits.maxArrayNesting + 1)))
        // Each level is a 4-byte element type and an 8-byte count.
        let tooDeepAt = valueOffset(w, "deep") + 12 * GGUFLimits.maxArrayNesting
        #expect(throws: GGUFError.nestingTooDeep(path: testPath, offset: tooDeepAt, key: "deep")) {
            try w.parse(path: testPath)
        }
        // One level less is fine.
        w.set("deep", .array(nestedArray(depth: GGUFLimits.maxArrayNesting)))
        _ = try w.parse()
    }

    @Test("duplicate metadata keys")
    func duplicateKey() {
        var w = smallWriter()
        w.append("llama.block_count", .uint32(3))
        #expect(throws: GGUFError.duplicateKey(path: testPath, key: "llama.block_count")) { try w.parse(path: testPath) }
    }

    @Test("duplicate tensor names")
    func duplicateTensor() {
        var w = smallWriter()
        w.addZeroTensor("output_norm.weight", dims: [4])
        #expect(throws: GGUFError.duplicateTensor(path: testPath, name: "output_norm.weight")) { try w.parse(path: testPath) }
    }

    /// Invalid UTF-8: a stray byte, a lone continuation, an overlong NUL, a surrogate, a code
    /// point past U+10FFFF, and a sequence cut short by the end of the string.
    static let invalidUTF8: [[UInt8]] = [
        [0x61, 0xFF, 0x62], [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x61, 0xE2, 0x82],
    ]

    @Test("invalid UTF-8 in a key", arguments: invalidUTF8)
    func invalidUTF8Key(key: [UInt8]) {
        var w = smallWriter()
        w.append(rawKey: key, .uint8(1))
        let at = w.layout().metadataOffsets.last! + 8
        #expect(throws: GGUFError.invalidString(path: testPath, offset: at)) { try w.parse(path: testPath) }
    }

    @Test("invalid UTF-8 in string values, array elements and tensor names")
    func invalidUTF8Elsewhere() {
        let bad: [UInt8] = [0xF0, 0x28, 0x8C, 0x28]
        // A string value: patch its bytes after writing a placeholder of the same length.
        var w = smallWriter()
        w.set("s", .string("abcd"))
        var bytes = w.bytes()
        var at = valueOffset(w, "s") + 8
        bytes.replaceSubrange(at..<(at + 4), with: bad)
        #expect(throws: GGUFError.invalidString(path: testPath, offset: at)) {
            try GGUFFile(copying: bytes, path: testPath)
        }
        // The third element of tokenizer.ggml.tokens ("a").
        w = smallWriter()
        bytes = w.bytes()
        at = valueOffset(w, "tokenizer.ggml.tokens") + 12 + (8 + 3) + (8 + 4) + 8
        #expect(bytes[at] == UInt8(ascii: "a"))
        bytes[at] = 0xFE
        #expect(throws: GGUFError.invalidString(path: testPath, offset: at)) {
            try GGUFFile(copying: bytes, path: testPath)
        }
        // A tensor name.
        w = smallWriter()
        w.tensors[1].name = [0x6F, 0xC3]  // "o" + half of a two-byte sequence
        #expect(throws: GGUFError.invalidString(path: testPath, offset: w.layout().tensorInfoOffsets[1] + 8)) {
            try w.parse(path: testPath)
        }
    }

    @Test("bad general.alignment values")
    func badAlignment() {
        let cases: [(GGUFValue, UInt64)] = [
            (.uint32(0), 0), (.uint32(3), 3), (.uint32(48), 48), (.uint32(131_072), 131_072),
            (.uint64(1 << 40), 1 << 40), (.uint64(.max), .max), (.int32(-32), UInt64(bitPattern: -32)),
            (.int64(-64), UInt64(bitPattern: -64)),
            (.string("32"), 0), (.float32(32), 0), (.bool(true), 0), (.array(.uint32([32])), 0),
        ]
        for (value, reported) in cases {
            var w = smallWriter()
            w.set("general.alignment", value)
            #expect(throws: GGUFError.badAlignment(path: testPath, alignment: reported), "\(value)") {
                try w.parse(path: testPath)
            }
        }
    }

    // MARK: Tensor infos

    @Test("unknown tensor types", arguments: [UInt32(4), 5, 31, 36, 40, 1000, .max])
    func unknownTensorType(raw: UInt32) {
        var w = smallWriter()
        w.modifyTensor("output_norm.weight") { $0.typeOverride = raw }
        #expect(throws: GGUFError.unknownTensorType(path: testPath, tensor: "output_norm.weight", rawType: raw)) {
            try w.parse(path: testPath)
        }
    }

    @Test("bad tensor dimensions")
    func badDims() {
        func shapeError(_ dims: [UInt64], type: GGMLType = .f32, dimCount: UInt32? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) -> (dims: [UInt64], reason: String)? {
            var w = smallWriter()
            w.tensors.append(GGUFWriter.Tensor(name: Array("bad".utf8), dims: dims, type: type, data: []))
            w.tensors[w.tensors.count - 1].dimCountOverride = dimCount
            guard case let .badTensorShape(_, tensor, dims, reason) = parseError(w, sourceLocation: sourceLocation) else {
                Issue.record("expected badTensorShape", sourceLocation: sourceLocation)
                return nil
            }
            #expect(tensor == "bad", sourceLocation: sourceLocation)
            return (dims, reason)
        }
        // A zero dimension, first or last.
        #expect(shapeError([0, 4])?.dims == [0, 4])
        #expect(shapeError([4, 2, 0])?.dims == [4, 2, 0])
        // Too many or too few dimensions (the dims are not read then).
        #expect(shapeError([1, 1, 1, 1, 1])?.reason.contains("5 dimensions") == true)
        #expect(shapeError([])?.reason.contains("0 dimensions") == true)
        #expect(shapeError([4], dimCount: .max)?.dims == [])
        // Rows that are not whole blocks.
        #expect(shapeError([16, 2], type: .q8_0)?.reason.contains("block size 32") == true)
        #expect(shapeError([128, 1], type: .q4_K)?.reason.contains("block size 256") == true)
        #expect(shapeError([33], type: .q4_0)?.dims == [33])
        // Dimensions and element counts beyond any real tensor.
        #expect(shapeError([1 << 51]) != nil)
        #expect(shapeError([1 << 30, 1 << 30, 1 << 30]) != nil)
        #expect(shapeError([.max, 2]) != nil)
    }

    @Test("misaligned tensor offsets")
    func misaligned() {
        var w = smallWriter()
        w.modifyTensor("output_norm.weight") { $0.offsetOverride = 72 }
        #expect(throws: GGUFError.misalignedTensor(path: testPath, tensor: "output_norm.weight", offset: 72, alignment: 32)) {
            try w.parse(path: testPath)
        }
        w = smallWriter(alignment: 64)
        w.modifyTensor("blk.0.attn_q.weight") { $0.offsetOverride = 32 }
        #expect(throws: GGUFError.misalignedTensor(path: testPath, tensor: "blk.0.attn_q.weight", offset: 32, alignment: 64)) {
            try w.parse(path: testPath)
        }
    }

    @Test("tensors lying outside the file")
    func outsideFile() {
        let fileSize = smallWriter().bytes().count
        // Far past the end, just past the end, and overlapping the end.
        for offset: UInt64 in [1 << 20, UInt64(fileSize), 128, UInt64.max - 31, 1 << 62] {
            var w = smallWriter()
            w.modifyTensor("blk.0.attn_q.weight") { $0.offsetOverride = offset }
            #expect(throws: GGUFError.tensorOutsideFile(path: testPath, tensor: "blk.0.attn_q.weight",
                                                        offset: offset, size: 256, fileSize: fileSize)) {
                try w.parse(path: testPath)
            }
        }
        // A tensor claiming more bytes than were written (dims bigger than the data).
        var w = smallWriter()
        w.tensors.append(GGUFWriter.Tensor(name: Array("big".utf8), dims: [1024], type: .f32, data: []))
        w.tensors.insert(w.tensors.removeLast(), at: 0)  // first in file order, at offset 0, overlapping
        w.modifyTensor("big") { $0.offsetOverride = 0 }
        #expect(throws: GGUFError.tensorOutsideFile(path: testPath, tensor: "big", offset: 0, size: 4096,
                                                    fileSize: w.bytes().count)) {
            try w.parse(path: testPath)
        }
    }

    // MARK: Files

    @Test("files that cannot be opened")
    func cannotOpen() throws {
        try TemporaryDirectory.with { dir in
            let missing = dir.file("missing.gguf").path
            #expect(throws: GGUFError.cannotOpen(path: missing, reason: "No such file or directory")) {
                try GGUFFile(path: missing)
            }
            let error = #expect(throws: GGUFError.self) { try GGUFFile(path: dir.path) }
            guard case let .cannotOpen(path, reason) = error else { Issue.record("expected cannotOpen"); return }
            #expect(path == dir.path && reason == "not a regular file")
        }
    }

    @Test("errors from files on disk name the file")
    func namesTheFile() throws {
        try TemporaryDirectory.with { dir in
            var w = smallWriter()
            w.truncateAt = 100
            let url = try w.write(to: dir, name: "cut.gguf")
            let error = #expect(throws: GGUFError.self) { try GGUFFile(path: url.path) }
            #expect(error?.description.hasPrefix(url.path + ": ") == true)
            // An empty file.
            let empty = try dir.write([], name: "empty.gguf")
            #expect(throws: GGUFError.truncatedHeader(path: empty.path, offset: 0, reading: "magic")) {
                try GGUFFile(path: empty.path)
            }
        }
    }
}
