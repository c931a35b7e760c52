import ArborGGUF
import ArborTestSupport
import Testing

@Suite("Truncation and mutation")
struct FuzzTests {
    @Test("every cut point gives truncatedHeader before the data and truncatedData after",
          arguments: [(UInt32(3), 32), (2, 32), (3, 64), (3, 1), (2, 8)])
    func everyCutPoint(version: UInt32, alignment: Int) {
        let (bytes, layout) = smallWriter(version: version, alignment: alignment).build()
        #expect(layout.dataEnd == bytes.count, "no trailing padding, so every cut loses data")
        var headerCuts = 0, dataCuts = 0
        for cut in 0..<bytes.count {
            do {
                _ = try GGUFFile(copying: bytes[..<cut], path: testPath)
                Issue.record("cut at \(cut) of \(bytes.count) parsed")
            } catch {  // typed throws: a GGUFError
                switch error {
                case let .truncatedHeader(path, offset, _):
                    #expect(cut < layout.headerSize, "cut \(cut): \(error)")
                    #expect(path == testPath && offset <= cut)
                    headerCuts += 1
                case let .truncatedData(path, expectedSize, fileSize):
                    #expect(cut >= layout.headerSize, "cut \(cut): \(error)")
                    #expect(path == testPath && expectedSize == bytes.count && fileSize == cut)
                    dataCuts += 1
                default:
                    Issue.record("cut at \(cut): \(error)")
                }
            }
        }
        #expect(headerCuts == layout.headerSize)
        #expect(dataCuts == bytes.count - layout.headerSize)
        // The whole file parses.
        #expect(throws: Never.self) { try GGUFFile(copying: bytes, path: testPath) }
    }

    @Test("cutting inside the last tensor's trailing padding loses nothing")
    func trailingPadding() throws {
        var w = GGUFWriter()
        w.addTensor("t", dims: [3], type: .f32, floats: [1, 2, 3])
        let (bytes, layout) = w.build()
        #expect(bytes.count == layout.dataOffset + 32)
        for cut in layout.dataEnd..<bytes.count {
            let f = try GGUFFile(copying: bytes[..<cut], path: testPath)
            #expect(Array(f.data(of: f.tensors[0]).bindMemory(to: Float.self)) == [1, 2, 3])
        }
    }

    /// Values that tend to break parsers when written over a length, count or type.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 63, 64, 127, 128, 255, 256, 1000, 0x7FFF, 0x8000, 0xFFFF,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 40, 1 << 50, 1 << 62, 1 << 63,
        UInt64(Int64.max), .max, .max - 1, .max - 31,
    ]

    @Test("2,000 random mutations of a valid file never crash")
    func randomMutations() {
        let (original, layout) = smallWriter().build()
        var rng = SplitMix64(seed: 0x4152_424F_5247_4755)
        var outcomes: [String: Int] = [:]
        for round in 0..<2000 {
            var bytes = original
            // Mostly the header (where the structure is), sometimes anywhere.
            let span = Bool.random(using: &rng) ? layout.headerSize : bytes.count
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0..<min(span, bytes.count), using: &rng)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0:  // one random byte
                    bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1:  // flip one bit
                    bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                case 2, 3:  // an interesting little-endian value of 1, 2, 4 or 8 bytes
                    let v = Self.interesting.randomElement(using: &rng)!
                    let width = [1, 2, 4, 8].randomElement(using: &rng)!
                    for k in 0..<width where at + k < bytes.count {
                        bytes[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))
                    }
                case 4:  // delete a few bytes
                    bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...9, using: &rng)))
                default:  // insert a few bytes
                    bytes.insert(contentsOf: (0..<Int.random(in: 1...9, using: &rng)).map { _ in
                        UInt8.random(in: 0...255, using: &rng)
                    }, at: at)
                }
                if bytes.isEmpty { break }
            }
            if round % 97 == 0 { bytes.removeSubrange(Int.random(in: 0...bytes.count, using: &rng)...) }
            do {
                let f = try GGUFFile(copying: bytes, path: testPath)
                // Whatever parsed must be safe to use.
                for info in f.tensors {
                    let data = f.data(of: info)
                    #expect(data.count == info.byteCount)
                    #expect(f.dataOffset + info.offset + info.byteCount <= bytes.count)
                    _ = data.reduce(0) { $0 &+ Int($1) }
                }
                for key in f.metadataKeys { _ = f.metadata[key]!.description }
                outcomes["parsed", default: 0] += 1
            } catch {  // typed throws: a GGUFError
                #expect(error.description.contains(testPath))
                outcomes[Mirror(reflecting: error).children.first?.label ?? "\(error)", default: 0] += 1
            }
        }
        // The mutations must actually reach the interesting checks, not only the magic.
        #expect(outcomes.count >= 6, "\(outcomes)")
    }
}
