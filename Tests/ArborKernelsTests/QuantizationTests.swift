import ArborGGUF
import ArborKernels
import CArborKernels
import Testing

// MARK: Swift re-implementations of ggml's reference activation quantizers

/// quantize_row_q8_0_ref / q8_1_ref: d = amax/127, q = roundf(x / d) (ties away from zero).
private func referenceQ8(_ x: [Float], withSum: Bool) -> [UInt8] {
    var out: [UInt8] = []
    for b in stride(from: 0, to: x.count, by: 32) {
        let block = x[b..<(b + 32)]
        let amax = block.reduce(Float(0)) { max($0, abs($1)) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        let qs = block.map { Int8(($0 * id).rounded(.toNearestOrAwayFromZero)) }
        let dBits = Float16(d).bitPattern
        out += [UInt8(dBits & 0xFF), UInt8(dBits >> 8)]
        if withSum {
            let sum = qs.reduce(0) { $0 + Int($1) }
            let sBits = Float16(Float(sum) * d).bitPattern
            out += [UInt8(sBits & 0xFF), UInt8(sBits >> 8)]
        }
        out += qs.map { UInt8(bitPattern: $0) }
    }
    return out
}

/// quantize_row_q8_K_ref: the signed value of largest magnitude maps to -127, round half to even,
/// f32 d = 1/iscale, and the sums of each 16 quants.
private func referenceQ8K(_ x: [Float]) -> [UInt8] {
    var out: [UInt8] = []
    for b in stride(from: 0, to: x.count, by: 256) {
        let block = Array(x[b..<(b + 256)])
        var amax: Float = 0, maxv: Float = 0
        for v in block where abs(v) > amax { amax = abs(v); maxv = v }
        if amax == 0 {
            out += [UInt8](repeating: 0, count: 292)
            continue
        }
        let iscale = -127 / maxv
        let qs = block.map { Int8(min(127, Int((iscale * $0).rounded(.toNearestOrEven)))) }
        let d = 1 / iscale
        out += littleEndianBytes([d])
        out += qs.map { UInt8(bitPattern: $0) }
        for j in 0..<16 {
            let s = Int16(qs[(16 * j)..<(16 * j + 16)].reduce(0) { $0 + Int($1) })
            out += [UInt8(UInt16(bitPattern: s) & 0xFF), UInt8(UInt16(bitPattern: s) >> 8)]
        }
    }
    return out
}

/// Inputs with the awkward cases: an all-zero block, a constant block, negative extremes, ties.
private func activationInputs(_ n: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    var x = rng.values(n)
    for i in 0..<32 { x[i] = 0 }
    for i in 32..<64 { x[i] = -0.75 }
    x[70] = -9; x[300] = 12; x[301] = -12
    // A block whose scale is exactly 1 (amax 127): every x.5 is a rounding tie, which roundf
    // (Q8_0/Q8_1) breaks away from zero and nearest_int (Q8_K, scale -1 here) to even.
    x[128] = 127
    for i in 129..<160 { x[i] = Float(i - 144) + 0.5 }
    return x
}

@Suite("Activation quantizers")
struct ActivationQuantizerTests {
    @Test func q8_0MatchesReference() {
        for seed in 1...5 as ClosedRange<UInt64> {
            let x = activationInputs(512, seed: seed)
            #expect(quantizedActivation(x, .q8_0) == referenceQ8(x, withSum: false))
        }
    }

    @Test func q8_1MatchesReference() {
        for seed in 1...5 as ClosedRange<UInt64> {
            let x = activationInputs(512, seed: seed)
            #expect(quantizedActivation(x, .q8_1) == referenceQ8(x, withSum: true))
        }
    }

    @Test func q8_KMatchesReference() {
        for seed in 1...5 as ClosedRange<UInt64> {
            var x = activationInputs(768, seed: seed)
            for i in 512..<768 { x[i] = 0 }  // an all-zero super-block
            #expect(quantizedActivation(x, .q8_K) == referenceQ8K(x))
        }
    }

    @Test func vecDotTypesAndRowSizes() {
        #expect(GGMLType.q4_0.vecDotType == .q8_0)
        #expect(GGMLType.q5_0.vecDotType == .q8_0)
        #expect(GGMLType.q8_0.vecDotType == .q8_0)
        #expect(GGMLType.q4_1.vecDotType == .q8_1)
        #expect(GGMLType.q5_1.vecDotType == .q8_1)
        #expect(GGMLType.q4_K.vecDotType == .q8_K)
        #expect(GGMLType.q5_K.vecDotType == .q8_K)
        #expect(GGMLType.q6_K.vecDotType == .q8_K)
        #expect(GGMLType.f16.vecDotType == .f32)
        #expect(GGMLType.bf16.vecDotType == .f32)
        #expect(GGMLType.f32.vecDotType == .f32)
        #expect(GGMLType.q2_K.vecDotType == nil)
        #expect(GGMLType.q4_K.activationRowBytes(columns: 1536) == 6 * 292)
        #expect(GGMLType.q4_1.activationRowBytes(columns: 576) == 18 * 36)
        #expect(GGMLType.q5_0.activationRowBytes(columns: 896) == 28 * 34)
        #expect(GGMLType.f16.activationRowBytes(columns: 10) == 40)
        #expect(GGMLType.q4_K.activationRowBytes(columns: 100) == nil)
        for t in allWeightTypes + [.q8_1, .q8_K] {
            #expect(t.rowBytes(count: t.blockSize * 3) == t.blockBytes * 3, "\(t)")
        }
    }
}

@Suite("Weight quantization round trips")
struct RoundTripTests {
    /// Worst error allowed, as a fraction of the block's (super-block's) value range.
    static func tolerance(_ t: GGMLType) -> Float {
        switch t {
        case .q4_0: 0.07
        case .q4_1: 0.04
        case .q5_0: 0.035
        case .q5_1: 0.02
        case .q8_0: 0.005
        case .q4_K: 0.05
        case .q5_K: 0.03
        case .q6_K: 0.02
        default: 0
        }
    }

    @Test(arguments: quantizedWeightTypes)
    func quantizedRoundTrip(_ type: GGMLType) {
        var rng = SplitMix64(seed: 42)
        var x = rng.values(1024, scale: 0.05)
        for i in 256..<288 { x[i] = 0 }
        for i in 512..<544 { x[i] = 0.01 }
        let y = dequantized(quantize(x, to: type), type, count: x.count)
        let block = type.blockSize
        for b in stride(from: 0, to: x.count, by: block) {
            let xs = x[b..<(b + block)]
            let range = max(xs.max()! - xs.min()!, xs.map { abs($0) }.max()!)
            let worst = (b..<(b + block)).map { abs(x[$0] - y[$0]) }.max()!
            #expect(worst <= range * Self.tolerance(type) + 1e-7, "\(type) block \(b / block): error \(worst), range \(range)")
        }
        // Errors are roughly unbiased: the mean error is far below the worst one.
        let meanError = zip(x, y).reduce(Double(0)) { $0 + Double($1.0 - $1.1) } / Double(x.count)
        #expect(abs(meanError) < 1e-3, "\(type) mean error \(meanError)")
    }

    @Test func floatRoundTrips() {
        var rng = SplitMix64(seed: 7)
        let x = rng.values(512, scale: 3)
        let f16 = dequantized(quantize(x, to: .f16), .f16, count: x.count)
        let bf16 = dequantized(quantize(x, to: .bf16), .bf16, count: x.count)
        let f32 = dequantized(quantize(x, to: .f32), .f32, count: x.count)
        for i in x.indices {
            #expect(f16[i] == Float(Float16(x[i])))
            #expect(abs(bf16[i] - x[i]) <= abs(x[i]) / 256)
            #expect(f32[i].bitPattern == x[i].bitPattern)
        }
    }
}

@Suite("Dequantization against gguf-py")
struct SyntheticFixtureTests {
    /// Each entry: blocks written by gguf-py's quantizer (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16, F16;
    /// `source == "gguf.quants.quantize"`, a port of ggml's reference quantizers) or random
    /// bytes with sane scales (Q4_K, Q5_K, Q6_K; gguf-py cannot quantize K formats), and the floats
    /// gguf-py dequantizes them to. Arbor must dequantize to the same bits and, where there is an
    /// input, quantize to the same bytes.
    @Test func matchesGGUFPy() throws {
        let fixtures = DequantFixtures.shared.synthetic
        #expect(Set(fixtures.map(\.type)).isSuperset(of: ["BF16", "F16", "Q4_0", "Q5_1", "Q5_K"]))
        for f in fixtures {
            let type = try #require(ggmlType(named: f.type))
            let blocks = [UInt8](hex: f.blocks)
            let expected = floatsFromLittleEndian([UInt8](hex: f.expected))
            #expect(expected.count == f.count)
            let got = dequantized(blocks, type, count: f.count)
            let mismatches = (0..<f.count).filter { got[$0].bitPattern != expected[$0].bitPattern }
            #expect(mismatches.isEmpty, "\(f.type) (\(f.source)): \(mismatches.count) values differ, first at \(mismatches.first ?? -1)")
            if let input = f.input {
                let x = floatsFromLittleEndian([UInt8](hex: input))
                #expect(quantize(x, to: type) == blocks, "\(f.type): quantizer bytes differ from gguf-py's")
            }
        }
    }

    /// A hand-built Q5_K block checked against the format's formula y = d·sc·q - dmin·m.
    @Test func handBuiltQ5K() {
        let d: Float16 = 0.0125, dmin: Float16 = 0.003
        let sc: [UInt8] = [1, 17, 33, 63, 0, 45, 12, 60]
        let mn: [UInt8] = [63, 0, 5, 40, 22, 9, 31, 48]
        var block = [UInt8](repeating: 0, count: 176)
        block[0] = UInt8(d.bitPattern & 0xFF); block[1] = UInt8(d.bitPattern >> 8)
        block[2] = UInt8(dmin.bitPattern & 0xFF); block[3] = UInt8(dmin.bitPattern >> 8)
        for j in 0..<4 {  // the 12-byte 6-bit packing
            block[4 + j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
            block[4 + j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6)
            block[4 + j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4)
        }
        // Element e of sub-block s has level q = (e*7 + s*3) % 32.
        func level(_ s: Int, _ e: Int) -> UInt8 { UInt8((e * 7 + s * 3) % 32) }
        for s in 0..<8 {
            for e in 0..<32 {
                let q = level(s, e)
                block[16 + e] |= (q >> 4) << UInt8(s)                         // qh: bit s of byte e
                block[48 + 32 * (s / 2) + e] |= (q & 0xF) << (s % 2 == 0 ? 0 : 4)  // qs nibbles
            }
        }
        let got = dequantized(block, .q5_K, count: 256)
        for s in 0..<8 {
            for e in 0..<32 {
                let expected = Float(d) * Float(sc[s]) * Float(level(s, e)) - Float(dmin) * Float(mn[s])
                #expect(got[32 * s + e] == expected, "sub-block \(s) element \(e)")
            }
        }
    }
}
