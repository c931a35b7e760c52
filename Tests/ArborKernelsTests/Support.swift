import ArborGGUF
import ArborKernels
import CArborKernels
import Foundation

/// Deterministic generator (SplitMix64) so every run sees the same data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Roughly Gaussian (sum of uniforms), with occasional outliers like real activations.
    mutating func values(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in
            var s: Float = 0
            for _ in 0..<4 { s += Float.random(in: -1...1, using: &self) }
            if Int.random(in: 0..<50, using: &self) == 0 { s *= 8 }
            return s * scale
        }
    }
}

/// Weight types with a dot product, and the float types.
let quantizedWeightTypes: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]
let allWeightTypes: [GGMLType] = [.f32, .f16, .bf16] + quantizedWeightTypes

func dequantized(_ bytes: [UInt8], _ type: GGMLType, count: Int) -> [Float] {
    bytes.withUnsafeBytes { dequantize(type: type, data: $0.baseAddress!, count: count) }
}

/// Activation row quantized to a vec-dot type with the C kernel.
func quantizedActivation(_ x: [Float], _ type: GGMLType) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: type.rowBytes(count: x.count)!)
    let rc = x.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBytes { arbor_quantize_activation_row(type.rawValue, src.baseAddress!, $0.baseAddress!, Int64(x.count)) }
    }
    precondition(rc == 0)
    return out
}

/// One dot through the C entry points (fast or scalar).
func vecDot(_ wtype: GGMLType, _ w: [UInt8], _ a: [UInt8], count: Int, scalar: Bool = false) -> Float {
    var out: Float = .nan
    let rc = w.withUnsafeBytes { wp in
        a.withUnsafeBytes { ap in
            scalar
                ? arbor_vec_dot_scalar(wtype.rawValue, Int64(count), wp.baseAddress!, ap.baseAddress!, ap.count, 1, &out, 1)
                : arbor_vec_dot(wtype.rawValue, Int64(count), wp.baseAddress!, ap.baseAddress!, ap.count, 1, &out, 1)
        }
    }
    precondition(rc == 0)
    return out
}

func halfToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

extension Array where Element == UInt8 {
    func u16(at offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
    func f32(at offset: Int) -> Float {
        Float(bitPattern: UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16 | UInt32(self[offset + 3]) << 24)
    }
    init(hex: String) {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var hi: UInt8 = 0, odd = false
        for c in hex.utf8 {
            let v: UInt8 = c <= 57 ? c - 48 : (c | 0x20) - 87
            if odd { out.append(hi << 4 | v) } else { hi = v }
            odd.toggle()
        }
        self = out
    }
}

func floatsFromLittleEndian(_ bytes: [UInt8]) -> [Float] {
    (0..<(bytes.count / 4)).map { bytes.f32(at: 4 * $0) }
}

func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in
        let b = v.bitPattern
        return [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]
    }
}

/// SHA-256 (FIPS 180-4), enough to check fixture digests.
func sha256Hex(_ message: [UInt8]) -> String {
    let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    var m = message
    let bitLength = UInt64(message.count) * 8
    m.append(0x80)
    while m.count % 64 != 56 { m.append(0) }
    for i in (0..<8).reversed() { m.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    var w = [UInt32](repeating: 0, count: 64)
    for chunk in stride(from: 0, to: m.count, by: 64) {
        for i in 0..<16 {
            w[i] = UInt32(m[chunk + 4 * i]) << 24 | UInt32(m[chunk + 4 * i + 1]) << 16 | UInt32(m[chunk + 4 * i + 2]) << 8 | UInt32(m[chunk + 4 * i + 3])
        }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] &+= v }
    }
    return h.map { String(format: "%08x", $0) }.joined()
}

// MARK: fixtures

struct DequantFixtures: Decodable {
    struct Real: Decodable {
        let model: String
        let tensor: String
        let type: String
        let columns: Int
        let rowCount: Int
        let rows: [Int]
        let sha256: String
        let head: [Float]
    }
    struct Synthetic: Decodable {
        let type: String
        let source: String
        let count: Int
        let input: String?
        let blocks: String
        let expected: String
    }
    let real: [Real]
    let synthetic: [Synthetic]

    /// Tests/ArborKernelsTests/Fixtures/dequant_fixtures.json, found next to this source file.
    static let shared: DequantFixtures = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dequant_fixtures.json")
        do {
            return try JSONDecoder().decode(DequantFixtures.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read \(url.path): \(error) (regenerate with scripts/fixtures/make_dequant_fixtures.py)")
        }
    }()
}

func ggmlType(named name: String) -> GGMLType? {
    GGMLType.allCases.first { $0.description == name }
}

/// `ARBOR_MODELS_DIR`, or `~/.cache/arbor/models`.
let modelsDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["ARBOR_MODELS_DIR"], !dir.isEmpty { return dir }
    return NSString(string: "~/.cache/arbor/models").expandingTildeInPath
}()

func modelPath(_ model: String) -> String { modelsDirectory + "/" + model + ".gguf" }
func modelExists(_ model: String) -> Bool { FileManager.default.fileExists(atPath: modelPath(model)) }
