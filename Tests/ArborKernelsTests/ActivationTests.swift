import CArborKernels
import Foundation
import Testing

@Suite("Feed-forward activations")
struct ActivationTests {
    static func swiglu(_ gate: [Float], _ up: [Float]) -> [Float] {
        var g = gate
        g.withUnsafeMutableBufferPointer { gp in
            up.withUnsafeBufferPointer { arbor_swiglu_f32(gp.baseAddress!, $0.baseAddress!, Int64(gate.count)) }
        }
        return g
    }

    /// Within a few ulps of the libm formula g / (1 + expf(-g)) · u over the range gates take
    /// and far beyond (where e^-g overflows or vanishes), with the same infinities and NaNs.
    @Test func swigluMatchesTheFormula() {
        var rng = SplitMix64(seed: 9)
        var gate = rng.values(4099, scale: 3)
        gate += [0, -0.0, 1e-30, -1e-30, 30, -30, 88, -88, 89, -89, 104, -104, 200, -200, .infinity, -.infinity, .nan]
        let up = (0..<gate.count).map { i in i % 7 == 0 ? Float(1) : Float(i % 13) * 0.25 - 1.5 }
        let got = Self.swiglu(gate, up)
        for i in gate.indices {
            let g = gate[i], u = up[i]
            let want = g / (1 + Foundation.expf(-g)) * u
            if want.isNaN || !want.isFinite {
                #expect(got[i].isNaN == want.isNaN && (want.isNaN || got[i] == want), "g=\(g) u=\(u): \(got[i]) vs \(want)")
                continue
            }
            #expect(abs(got[i] - want) <= 4e-7 * abs(want) + Float.leastNormalMagnitude, "g=\(g) u=\(u): \(got[i]) vs \(want)")
        }
    }

    /// An element's value does not depend on the length of the call or where it starts: the
    /// parallel split of a batch (and its tail) cannot change a token's activations.
    @Test func swigluIsIndependentOfTheSplit() {
        var rng = SplitMix64(seed: 10)
        let gate = rng.values(1000, scale: 4), up = rng.values(1000)
        let whole = Self.swiglu(gate, up)
        for cut in [1, 7, 15, 16, 17, 333, 999] {
            let a = Self.swiglu(Array(gate[..<cut]), Array(up[..<cut]))
            let b = Self.swiglu(Array(gate[cut...]), Array(up[cut...]))
            #expect(zip(a + b, whole).allSatisfy { $0.bitPattern == $1.bitPattern }, "split at \(cut)")
        }
    }
}
