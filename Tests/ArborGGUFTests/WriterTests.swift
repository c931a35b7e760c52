import ArborGGUF
import ArborTestSupport
import Foundation
import Testing

/// The writer's float encoders against bytes produced by gguf-py 0.19 (`gguf.quants.quantize`,
/// numpy's float16), for x[i] = ((i * 37) % 101 - 50) / 7 with x[5] = 0 and x[40] = -9.25.
@Suite("GGUFWriter")
struct WriterTests {
    static let input: [Float] = {
        var x = (0..<64).map { Float((($0 * 37) % 101) - 50) / 7 }
        x[5] = 0
        x[40] = -9.25
        return x
    }()

    static let expected: [(GGMLType, String)] = [
        (.q8_0, "332b81df3d9af800b41270cd2b89e745a2005ebb1977d53390ee4caa0866c3217fdca92c2db0f841c30c54d781a2ea33b5fe47c9125add25a8f039bb044ccf1860e32bae"),
        (.q4_0, "253be046acf258b81379df358be046acf268a03c9be368ac2479cd4580d2579be368bc35"),
        (.f16, "25c76ebfdb42b7c5dbb6000049c4003c4946b7c1db40b7c6b7bdb74349c500004945b7c3b73db746dbc0b74149c600bc4944dbc4db36b745dbc26e3f254700c09242dbc592b8b7446ec4db3a254600c2a0c8dbc649be6e436ec592b0254500c4253d924625c16e416ec692bc254400c59234924525c3db3e004749c0494200c6"),
        (.bf16, "e5c0eebf5b40b7c0dbbe000089c0803fc94037c01b40d7c0b7bf7740a9c00000a94077c0b73fd7401bc03740c9c080bf89409bc0db3eb7405bc0ee3fe54000c05240bbc012bf97408ec05b3fc54040c014c1dbc0c9bf6e40aec012bea54080c0a53fd24025c02e40cec092bf8540a0c0923eb24065c0db3fe04009c04940c0c0"),
    ]

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test("float encoders match gguf-py byte for byte")
    func encoders() {
        for (type, hex) in Self.expected {
            #expect(GGUFWriter.encode(Self.input, as: type).map(Self.hex) == hex, "\(type)")
        }
        #expect(GGUFWriter.encode(Self.input, as: .f32)?.count == 256)
        #expect(GGUFWriter.encode(Self.input, as: .q4_K) == nil)
        #expect(GGUFWriter.encode([1, 2, 3], as: .q8_0) == nil)
        // All-zero blocks: d is +0 for Q8_0 and -0 (0 / -8) for Q4_0, as in ggml.
        #expect(GGUFWriter.encode([Float](repeating: 0, count: 32), as: .q8_0) == [UInt8](repeating: 0, count: 34))
        #expect(GGUFWriter.encode([Float](repeating: 0, count: 32), as: .q4_0) == [0x00, 0x80] + [UInt8](repeating: 0x88, count: 16))
    }

    @Test("half and bfloat16 rounding and special values match numpy and gguf-py")
    func specialValues() {
        let x: [Float] = [0, -0.0, 1, 0.1, 65504, 65519, 65520, 1e-8, 6e-5, 3e-5, -2.5, .infinity, -.infinity, 1e10,
                          5.960464477539063e-08, 2.98e-08]
        #expect(x.map(GGUFWriter.halfBits) == [0, 32768, 15360, 11878, 31743, 31743, 31744, 0, 1007, 503, 49408,
                                               31744, 64512, 31744, 1, 0])
        #expect(x.map(GGUFWriter.bfloat16Bits) == [0, 32768, 16256, 15821, 18304, 18304, 18304, 12844, 14460, 14332,
                                                   49184, 32640, 65408, 20501, 13184, 13056])
        #expect(GGUFWriter.halfBits(.nan) & 0x7C00 == 0x7C00 && GGUFWriter.halfBits(.nan) & 0x3FF != 0)
        #if !(os(macOS) && arch(x86_64))
        // Exhaustive-ish against the platform's Float16 conversion (round to nearest even).
        var rng = SplitMix64(seed: 7)
        for _ in 0..<100_000 {
            let f = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            guard !f.isNaN else { continue }
            #expect(GGUFWriter.halfBits(f) == Float16(f).bitPattern, "\(f)")
        }
        #endif
    }

    @Test("set replaces in place, append duplicates, GGUFKey names resolve the architecture")
    func metadataEditing() {
        var w = GGUFWriter()
        w.set("general.architecture", .string("gemma3"))
        w.set("a", .uint8(1))
        w.set(.contextLength, .uint32(128))
        w.set("a", .uint8(2))
        #expect(w.metadata.map(\.keyString) == ["general.architecture", "a", "gemma3.context_length"])
        #expect(w["a"] == .uint8(2))
        w.append("a", .uint8(3))
        #expect(w.metadata.count == 4)
        w.remove("a")
        #expect(w.metadata.map(\.keyString) == ["general.architecture", "gemma3.context_length"])
        #expect(w["a"] == nil)
    }

    @Test("layout reports where everything landed")
    func layout() throws {
        var w = GGUFWriter(alignment: 64)
        w.set("k", .string("v"))
        w.addTensor("a", dims: [3], type: .f32, floats: [1, 2, 3])
        w.addTensor("b", dims: [32], type: .q8_0, floats: [Float](repeating: 1, count: 32))
        let (bytes, l) = w.build()
        #expect(l.metadataOffsets == [24, 24 + 8 + 1 + 4 + 8 + 1])  // then the automatic general.alignment
        #expect(w.layout() == l)
        #expect(l.tensorDataOffsets == [0, 64])
        #expect(l.dataOffset % 64 == 0 && l.dataOffset >= l.headerSize && l.dataOffset - l.headerSize < 64)
        #expect(l.dataEnd == l.dataOffset + 64 + 34)
        #expect(l.fileSize == bytes.count && bytes.count == l.dataOffset + 128)
        #expect(Array(bytes[l.tensorInfoOffsets[1]..<(l.tensorInfoOffsets[1] + 9)]) == [1, 0, 0, 0, 0, 0, 0, 0, UInt8(ascii: "b")])
        // Patches and truncation apply last.
        w.patches = [GGUFWriter.Patch(offset: 0, bytes: Array("XX".utf8)), GGUFWriter.Patch(offset: bytes.count - 1, bytes: [1, 2, 3])]
        w.truncateAt = 10
        #expect(w.bytes() == Array("XXUF".utf8) + [3, 0, 0, 0, 2, 0])
        #expect(w.layout().fileSize == 10)
        // Turning the automatic alignment key off keeps the layout but not the key.
        w = GGUFWriter(alignment: 64)
        w.writesAlignmentKey = false
        #expect(w.bytes().count == 64)
        #expect(try w.parse().metadata.isEmpty)
    }

    @Test("quantized tensors written from floats dequantize close to the input")
    func quantizedTensor() throws {
        var w = GGUFWriter()
        w.addTensor("q", dims: [32, 2], type: .q8_0, floats: Self.input)
        let f = try w.parse()
        let data = Array(f.data(of: f.tensors[0]))
        #expect(data.count == 68)
        // Dequantize block 0 by hand: d (f16) * q.
        let d = Float(Float16(bitPattern: UInt16(data[0]) | UInt16(data[1]) << 8))
        for i in 0..<32 {
            // Rounding costs d/2; storing d as f16 up to 127 * d * 2^-11 more.
            #expect(abs(d * Float(Int8(bitPattern: data[2 + i])) - Self.input[i]) <= 0.57 * d)
        }
    }

    @Test("TemporaryDirectory creates a unique directory and removes it")
    func temporaryDirectory() throws {
        var path = ""
        try TemporaryDirectory.with { dir in
            path = dir.path
            #expect(FileManager.default.fileExists(atPath: path))
            try dir.write([1, 2, 3], name: "x.bin")
            #expect(FileManager.default.contents(atPath: dir.file("x.bin").path) == Data([1, 2, 3]))
            let other = try TemporaryDirectory()
            #expect(other.path != dir.path)
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}

@Suite("Summaries for inspect")
struct SummaryTests {
    @Test("values render on one line, long ones summarized")
    func values() {
        #expect(GGUFValue.uint32(7).summary() == "7")
        #expect(GGUFValue.float32(1e-6).summary() == "1e-06")
        #expect(GGUFValue.string("a\"b\\c\nd\t\u{1B}\u{200B}é👩‍💻").summary() == #""a\"b\\c\nd\t\u{1B}\u{200B}é👩‍💻""#)
        let long = String(repeating: "x", count: 100)
        #expect(GGUFValue.string(long).summary(maxCharacters: 5) == "\"xxxxx\"… (100 bytes)")
        #expect(GGUFValue.string(long).summary(maxCharacters: nil) == "\"" + long + "\"")
        #expect(GGUFValue.array(.int32([1, -2])).summary() == "[1, -2]")
        #expect(GGUFValue.array(.string(["a", "b", "c", "d"])).summary(maxElements: 3) == #"[string × 4] ["a", "b", "c", …]"#)
        #expect(GGUFValue.array(.string(["a", "b", "c", "d"])).summary(maxElements: nil) == #"["a", "b", "c", "d"]"#)
        #expect(GGUFValue.array(.array([.uint8([1]), .bool([])])).summary() == "[[1], []]")
        #expect(GGUFValue.array(.float64([])).typeSummary == "[f64]")
        #expect(GGUFValue.bool(true).typeSummary == "bool")
        #expect(GGUFArray.uint16([1, 2, 3]).elementSummaries(range: 1..<3) == ["2", "3"])
    }
}
