import CArborKernels
import Foundation
import Testing

@Suite("Attention kernel: ggml's flash-attention numerics in fixed chunks and segments")
struct AttentionTests {
    /// Random keys and values for `rows` slots of one key/value head (stride = dim, F16), and
    /// `g` queries rounded to F16 values as the model rounds them.
    struct Case {
        let g: Int, dk: Int, dv: Int, rows: Int
        var keys: [UInt16], values: [UInt16], q: [Float]

        init(g: Int, dk: Int, dv: Int, rows: Int, seed: UInt64, sharp: Float = 1) {
            self.g = g; self.dk = dk; self.dv = dv; self.rows = rows
            var rng = SplitMix64(seed: seed)
            keys = rng.values(rows * dk).map { Float16($0).bitPattern }
            values = rng.values(rows * dv).map { Float16($0).bitPattern }
            q = rng.values(g * dk, scale: sharp).map { Float(Float16($0)) }
        }

        var scale: Float { 1 / Float(dk).squareRoot() }

        /// `arbor_attend` over `slots`.
        func attend(_ slots: [Int32]) -> [Float] {
            var out = [Float](repeating: .nan, count: g * dv)
            var scratch = [Float](repeating: 0, count: 2 * Int(arbor_attend_state_size(Int64(g), Int64(dv))))
            arbor_attend(q, Int64(g), keys, Int64(dk), values, Int64(dv), slots, Int64(slots.count),
                         Int64(dk), Int64(dv), scale, &scratch, &out)
            return out
        }

        /// The split path a caller takes across threads: each segment's partial, merged in order.
        func attendSplit(_ slots: [Int32]) -> [Float] {
            let size = Int(arbor_attend_state_size(Int64(g), Int64(dv)))
            let segment = Int(ARBOR_ATTEND_SEGMENT)
            let count = max(1, (slots.count + segment - 1) / segment)
            // Computed last to first, as another thread might.
            var states = [[Float]](repeating: [Float](repeating: .nan, count: size), count: count)
            for k in (0..<count).reversed() {
                let part = Array(slots[min(slots.count, k * segment)...])
                arbor_attend_partial(q, Int64(g), keys, Int64(dk), values, Int64(dv), part, Int64(part.count),
                                     Int64(dk), Int64(dv), scale, &states[k])
            }
            var state = states[0]
            for k in 1..<count { arbor_attend_merge(Int64(g), Int64(dv), &state, states[k]) }
            var out = [Float](repeating: .nan, count: g * dv)
            arbor_attend_finish(Int64(g), Int64(dv), state, &out)
            return out
        }

        /// Softmax attention in Double, the definition.
        func reference(_ slots: [Int32]) -> [Double] {
            var out = [Double](repeating: 0, count: g * dv)
            guard !slots.isEmpty else { return out }
            for h in 0..<g {
                let scores = slots.map { s -> Double in
                    (0..<dk).reduce(0.0) { $0 + Double(q[h * dk + $1]) * Double(Float16(bitPattern: keys[Int(s) * dk + $1])) } * Double(scale)
                }
                let m = scores.max()!
                let w = scores.map { exp($0 - m) }
                let total = w.reduce(0, +)
                for (j, s) in slots.enumerated() {
                    for d in 0..<dv { out[h * dv + d] += w[j] / total * Double(Float16(bitPattern: values[Int(s) * dv + d])) }
                }
            }
            return out
        }
    }

    static let shapes: [(g: Int, dk: Int)] = [(6, 128), (7, 64), (3, 64), (4, 256), (2, 16), (3, 24)]

    @Test("Equals softmax attention computed in Double, for every head shape the models use",
          arguments: shapes)
    func matchesDefinition(shape: (g: Int, dk: Int)) {
        let c = Case(g: shape.g, dk: shape.dk, dv: shape.dk, rows: 1300, seed: UInt64(shape.dk * 10 + shape.g), sharp: 3)
        for n in [1, 15, 16, 17, 511, 512, 513, 1300] {
            let slots = (0..<n).map { Int32(($0 * 7) % c.rows) }
            let got = c.attend(slots), want = c.reference(slots)
            var worst = 0.0
            for i in got.indices { worst = max(worst, abs(Double(got[i]) - want[i])) }
            // The weighted sum is kept in F16 as the reference engine keeps it: errors of a few 1e-3
            // for values of order 1. A wrong rescale or weight gives errors of order 0.1 to 1.
            #expect(worst < 1.5e-2, "g \(c.g) dk \(c.dk) n \(n): max |Δ| \(worst)")
        }
    }

    @Test("Splitting a list at its segments and merging in order gives the same bits", arguments: shapes)
    func splitIsInvisible(shape: (g: Int, dk: Int)) {
        let c = Case(g: shape.g, dk: shape.dk, dv: shape.dk, rows: 1600, seed: 77)
        for n in [1, 300, 512, 513, 1024, 1025, 1600] {
            let slots = (0..<n).map { Int32(($0 * 13) % c.rows) }
            #expect(c.attend(slots) == c.attendSplit(slots), "g \(c.g) dk \(c.dk) n \(n)")
        }
    }

    @Test("A head's result does not depend on the other heads of its group")
    func headsAreIndependent() {
        let wide = Case(g: 6, dk: 128, dv: 128, rows: 700, seed: 5)
        var one = Case(g: 1, dk: 128, dv: 128, rows: 700, seed: 5)
        one.q = Array(wide.q[(2 * 128)..<(3 * 128)])
        let slots = (0..<700).map { Int32($0) }
        #expect(Array(wide.attend(slots)[(2 * 128)..<(3 * 128)]) == one.attend(slots))
    }

    @Test("A very sharp distribution picks its key; an empty list gives zeros, not NaN")
    func extremes() {
        var c = Case(g: 1, dk: 64, dv: 64, rows: 40, seed: 3)
        // The query is key 29 scaled up: its score dwarfs the rest.
        c.q = (0..<64).map { Float(Float16(Float(Float16(bitPattern: c.keys[29 * 64 + $0])) * 40)) }
        let got = c.attend((0..<40).map(Int32.init))
        let want = (0..<64).map { Float(Float16(bitPattern: c.values[29 * 64 + $0])) }
        for d in 0..<64 { #expect(abs(got[d] - want[d]) < 1e-3) }
        #expect(c.attend([]) == [Float](repeating: 0, count: 64))
    }
}
