import ArborGGUF
import ArborTestSupport
import Foundation
import Testing

/// Every scalar value type, with its extremes.
let scalarValues: [(String, GGUFValue)] = [
    ("t.u8.min", .uint8(0)), ("t.u8.max", .uint8(.max)),
    ("t.i8.min", .int8(.min)), ("t.i8.max", .int8(.max)),
    ("t.u16", .uint16(.max)), ("t.i16", .int16(.min)),
    ("t.u32", .uint32(.max)), ("t.i32", .int32(.min)),
    ("t.f32", .float32(-1.5e-7)), ("t.f32.inf", .float32(-.infinity)), ("t.f32.negzero", .float32(-0.0)),
    ("t.bool.true", .bool(true)), ("t.bool.false", .bool(false)),
    ("t.str", .string("hello")), ("t.str.empty", .string("")),
    ("t.str.unicode", .string("héllo 世界 🌳\u{0}\n\t\"")),
    ("t.u64", .uint64(.max)), ("t.i64", .int64(.min)),
    ("t.f64", .float64(.pi)), ("t.f64.tiny", .float64(.leastNonzeroMagnitude)),
]

/// Every array element type (empty ones too) and nested arrays.
let arrayValues: [(String, GGUFArray)] = [
    ("a.u8", .uint8([0, 1, 255])), ("a.i8", .int8([-128, 0, 127])),
    ("a.u16", .uint16([0, .max])), ("a.i16", .int16([.min, -1, .max])),
    ("a.u32", .uint32([7, .max])), ("a.i32", .int32([.min, 0, .max])),
    ("a.f32", .float32([0, -1.25, .greatestFiniteMagnitude])), ("a.bool", .bool([true, false, true])),
    ("a.str", .string(["", "a", "ü", "🌲🌲"])), ("a.u64", .uint64([0, .max])),
    ("a.i64", .int64([.min, .max])), ("a.f64", .float64([-0.5, 1e300])),
    ("a.empty.u8", .uint8([])), ("a.empty.str", .string([])), ("a.empty.nested", .array([])),
    ("a.nested", .array([.uint8([1, 2]), .string(["x", "y"]), .array([.float64([1]), .array([])]), .bool([])])),
    ("a.matrix", .array([.int32([1, 2, 3]), .int32([4, 5, 6])])),
]

/// An array nested `depth` levels deep (depth 1 is a plain array).
func nestedArray(depth: Int) -> GGUFArray {
    depth == 1 ? .uint32([42]) : .array([nestedArray(depth: depth - 1)])
}

@Suite("Round trips")
struct RoundTripTests {
    @Test("every metadata value type survives a round trip", arguments: [UInt32(2), 3])
    func everyValueType(version: UInt32) throws {
        var w = GGUFWriter(version: version)
        for (k, v) in scalarValues { w.set(k, v) }
        for (k, a) in arrayValues { w.set(k, .array(a)) }
        w.set("a.deepest", .array(nestedArray(depth: GGUFLimits.maxArrayNesting)))
        let f = try w.parse(path: testPath)
        #expect(f.version == version)
        #expect(f.metadataKeys == scalarValues.map(\.0) + arrayValues.map(\.0) + ["a.deepest"])
        for (k, v) in scalarValues {
            #expect(f.metadata[k] == v, "\(k)")
            #expect(f.metadata[k]?.type == v.type)
        }
        // -0.0 == 0.0, so check the sign bit explicitly.
        #expect(f.metadata["t.f32.negzero"]?.float?.sign == .minus)
        for (k, a) in arrayValues {
            #expect(f.metadata[k] == .array(a), "\(k)")
        }
        #expect(f.metadata["a.deepest"] == .array(nestedArray(depth: GGUFLimits.maxArrayNesting)))
        #expect(f.tensors.isEmpty)
    }

    @Test("NaN metadata keeps its bit pattern")
    func nan() throws {
        var w = GGUFWriter()
        let payload = Float(bitPattern: 0x7FC0_1234)
        w.set("nan32", .float32(payload))
        w.set("nan64", .float64(.nan))
        w.set("nans", .array(.float32([.nan, payload])))
        let f = try w.parse()
        guard case let .float32(x) = f.metadata["nan32"] else { Issue.record("not f32"); return }
        #expect(x.bitPattern == 0x7FC0_1234)
        #expect(f.metadata["nan64"]?.float?.isNaN == true)
        guard case let .array(.float32(xs)) = f.metadata["nans"] else { Issue.record("not [f32]"); return }
        #expect(xs.map(\.bitPattern) == [Float.nan.bitPattern, 0x7FC0_1234])
    }

    @Test("a file written to disk parses through the memory map, v2 and v3", arguments: [UInt32(2), 3])
    func onDisk(version: UInt32) throws {
        try TemporaryDirectory.with { dir in
            let w = smallWriter(version: version)
            let url = try w.write(to: dir)
            #expect(url.lastPathComponent == "model.gguf")
            let f = try GGUFFile(path: url.path)
            #expect(f.path == url.path)
            #expect(f.version == version)
            #expect(f.architecture == "llama")
            #expect(try f.requireInt(.blockCount) == 2)
            #expect(try f.requireString(.name) == "tiny ✓")
            #expect(try f.requireFloat(.layerNormRMSEpsilon) == Double(Float(1e-5)))
            #expect(try f.requireStrings(.tokenizerTokens) == ["<s>", "</s>", "a", "é"])
            #expect(f.fileSize == w.bytes().count)
            #expect(f.tensors.map(\.name) == ["token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight"])
            let data = f.data(of: try f.tensorInfo("token_embd.weight"))
            #expect(Array(data.bindMemory(to: Float.self)) == (0..<12).map { Float($0) })
        }
    }

    @Test("tensor data is read in place, at the offsets the writer chose",
          arguments: [1, 2, 8, 16, 32, 64, 128, 4096])
    func alignment(_ alignment: Int) throws {
        var w = smallWriter(alignment: alignment)
        // An odd-sized tensor first forces real padding between tensors.
        w.tensors.insert(GGUFWriter.Tensor(name: Array("odd".utf8), dims: [3], type: .i8, data: [1, 2, 3]), at: 0)
        let (bytes, layout) = w.build()
        let f = try GGUFFile(copying: bytes, path: testPath)
        #expect(f.alignment == alignment)
        #expect(f.metadata["general.alignment"] == (alignment == 32 ? nil : .uint32(UInt32(alignment))))
        #expect(f.dataOffset == layout.dataOffset)
        #expect(f.dataOffset % alignment == 0)
        #expect(f.tensors.map(\.offset) == layout.tensorDataOffsets)
        for (info, written) in zip(f.tensors, w.tensors) {
            #expect(info.offset % alignment == 0)
            #expect(info.byteCount == written.data.count)
            #expect(info.dims == written.dims.map { Int($0) })
            #expect(info.type == written.type)
            let data = f.data(of: info)
            #expect(Array(data) == written.data, "\(info.name)")
            // In place: the buffer points into the file's bytes, no copy.
            let base = f.mapping.bytes.baseAddress!
            #expect(data.baseAddress == base + f.dataOffset + info.offset)
        }
    }

    @Test("an explicit general.alignment of any integer type is honoured")
    func alignmentKeyTypes() throws {
        for value: GGUFValue in [.uint8(64), .uint16(64), .int32(64), .uint64(64), .int64(64)] {
            var w = GGUFWriter(alignment: 64)
            w.set("general.alignment", value)
            w.addZeroTensor("t", dims: [3])
            let f = try w.parse()
            #expect(f.alignment == 64)
            #expect(f.dataOffset % 64 == 0)
        }
    }

    @Test("tensors of every GGML type, at every rank, round trip")
    func everyTensorType() throws {
        var w = GGUFWriter()
        for (i, type) in GGMLType.allCases.enumerated() {
            let dims = [[type.blockSize * 2], [type.blockSize, 3], [type.blockSize, 1, 2], [type.blockSize, 2, 1, 3]][i % 4]
            var data = [UInt8](repeating: 0, count: type.byteCount(elements: dims.reduce(1, *))!)
            for j in data.indices { data[j] = UInt8(truncatingIfNeeded: j &* 31 &+ i) }
            w.addTensor("t.\(type)", dims: dims, type: type, data: data)
        }
        let f = try w.parse()
        #expect(f.tensors.count == GGMLType.allCases.count)
        for (info, written) in zip(f.tensors, w.tensors) {
            #expect(info.name == written.nameString)
            #expect(info.type == written.type)
            #expect(info.dims == written.dims.map { Int($0) })
            #expect(info.elementCount == info.dims.reduce(1, *))
            #expect(info.rowLength == info.dims[0])
            #expect(info.rowBytes * info.rowCount == info.byteCount)
            #expect(Array(f.data(of: info)) == written.data)
        }
        #expect(f.tensorBytes == w.tensors.reduce(0) { $0 + $1.data.count })
    }

    @Test("unicode names and keys, empty keys")
    func unicodeNames() throws {
        var w = GGUFWriter()
        w.set("ключ.🌳", .string("значение"))
        w.set("", .uint8(1))
        w.addZeroTensor("тензор.ü", dims: [2])
        let f = try w.parse()
        #expect(f.metadata["ключ.🌳"] == .string("значение"))
        #expect(f.metadata[""] == .uint8(1))
        #expect(f.hasTensor("тензор.ü"))
    }

    @Test("a file with no metadata and no tensors is valid")
    func empty() throws {
        let w = GGUFWriter(version: 2)
        #expect(w.bytes().count == 32)  // 24-byte header padded to 32
        let f = try w.parse()
        #expect(f.metadata.isEmpty && f.tensors.isEmpty)
        #expect(f.architecture == "")
        #expect(f.tensorTypeTally.isEmpty)
    }

    @Test("typed accessors: missing keys, wrong types, missing tensors")
    func accessors() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("qwen2"))
        w.set("qwen2.block_count", .string("24"))
        w.set("tokenizer.ggml.tokens", .array(.int32([1])))
        let f = try w.parse(path: testPath)
        #expect(try f.int(.contextLength) == nil)
        #expect(throws: GGUFError.missingKey(path: testPath, key: "qwen2.context_length")) {
            try f.requireInt(.contextLength)
        }
        #expect(throws: GGUFError.wrongValueType(path: testPath, key: "qwen2.block_count", expected: "an integer", found: "string")) {
            try f.requireInt(.blockCount)
        }
        #expect(throws: GGUFError.wrongValueType(path: testPath, key: "tokenizer.ggml.tokens", expected: "an array of strings", found: "array of i32")) {
            try f.requireStrings(.tokenizerTokens)
        }
        #expect(throws: GGUFError.missingTensor(path: testPath, name: "output.weight")) {
            try f.tensorInfo("output.weight")
        }
    }

    @Test("the type tally groups tensors by type, most bytes first")
    func tally() throws {
        let f = try smallWriter().parse()
        #expect(f.tensorTypeTally == [
            GGUFTypeTally(type: .f32, count: 2, bytes: 48 + 256),
            GGUFTypeTally(type: .f16, count: 1, bytes: 8),
        ])
    }
}
