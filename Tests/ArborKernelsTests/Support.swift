import ArborGGUF
import ArborKernels
import CArborKernels
import ArborStore
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

/// SHA-256 of the fixture rows, with the store's implementation (tested against NIST vectors).
func sha256Hex(_ message: [UInt8]) -> String { SHA256.hexDigest(message) }

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
