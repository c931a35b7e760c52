import Foundation
import Testing

@testable import ArborEngine

@Suite("Sampling kernels")
struct SamplingKernelsTests {
    @Test func vectorExpMatchesLibm() {
        var worst = 0.0
        var x: Float = -86.9
        while x <= 10 {
            let got = Double(SamplingKernels.exp(x))
            let want = Foundation.exp(Double(x))
            worst = max(worst, abs(got - want) / want)
            x += 0.0137
        }
        #expect(worst < 4e-7, "max relative error \(worst)")
        #expect(SamplingKernels.exp(0) == 1)
    }

    @Test func vectorExpEdgeCases() {
        #expect(SamplingKernels.exp(-.infinity) == 0)
        #expect(SamplingKernels.exp(.nan) == 0)
        #expect(SamplingKernels.exp(-88) == 0)
        #expect(SamplingKernels.exp(-1000) == 0)
        #expect(SamplingKernels.exp(-87) > 0)
        let v = SamplingKernels.exp(SIMD8<Float>(0, -1, -2, -.infinity, 1, .nan, -90, 2))
        for (i, x) in [Float(0), -1, -2, -.infinity, 1, .nan, -90, 2].enumerated() {
            #expect(v[i] == SamplingKernels.exp(x))
        }
    }

    @Test(arguments: [1, 7, 8, 9, 16, 17, 100, 1001])
    func maxAndArgmaxFindsFirstMaximum(count: Int) {
        var g = Xoshiro256StarStar(seed: UInt64(count))
        for trial in 0..<20 {
            var l = (0..<count).map { _ in Float(Int.random(in: -5...5, using: &g)) }
            if trial % 3 == 0 { l[Int.random(in: 0..<count, using: &g)] = .nan }
            if trial % 4 == 0 { l[Int.random(in: 0..<count, using: &g)] = -.infinity }
            let m = l.filter { !$0.isNaN }.max() ?? -.infinity
            let at = l.firstIndex(of: m) ?? 0
            let got = l.withUnsafeBufferPointer { SamplingKernels.maxAndArgmax($0) }
            #expect(got.value == m && got.index == at, "\(l)")
        }
        let allNegInf = [Float](repeating: -.infinity, count: count)
        #expect(allNegInf.withUnsafeBufferPointer { SamplingKernels.maxAndArgmax($0) }.index == 0)
    }

    @Test(arguments: [1, 5, 8, 13, 64, 1000])
    func fillDenseIsNormalisedSoftmax(count: Int) {
        let l = gaussianLogits(count: count, scale: 2, seed: UInt64(count))
        let (m, _) = l.withUnsafeBufferPointer { SamplingKernels.maxAndArgmax($0) }
        let rule = SamplingKernels.KeepRule.all(minCut: -.infinity, maxLogit: m, temperature: 0.7)
        var out = [Float](repeating: -1, count: count)
        l.withUnsafeBufferPointer { lb in out.withUnsafeMutableBufferPointer { SamplingKernels.fillDense(lb, rule, into: $0) } }
        let z = l.reduce(0.0) { $0 + exp((Double($1) - Double(m)) / 0.7) }
        for i in 0..<count { #expect(abs(Double(out[i]) - exp((Double(l[i]) - Double(m)) / 0.7) / z) < 1e-6) }
    }

    @Test func keepRuleBoundaryUsesIdOnTies() {
        // Boundary (2, id 3): keeps x > 2, and x == 2 with id ≤ 3.
        let l: [Float] = [2, 3, 2, 2, 2, 1, 2, 2, 2, 5]
        let rule = SamplingKernels.KeepRule(boundaryValue: 2, boundaryIndex: 3, minCut: -.infinity, maxLogit: 5,
                                            temperature: 1)
        var out = [Float](repeating: 0, count: l.count)
        l.withUnsafeBufferPointer { lb in out.withUnsafeMutableBufferPointer { SamplingKernels.fillDense(lb, rule, into: $0) } }
        #expect(out.indices.filter { out[$0] > 0 } == [0, 1, 2, 3, 9])
    }

    @Test(arguments: [0, 1, 2, 15, 16, 17, 100, 5000])
    func candidateSortMatchesStandardLibrary(count: Int) {
        var g = Xoshiro256StarStar(seed: UInt64(count) + 1)
        let patterns: [[Float]] = [
            (0..<count).map { _ in Float(Int.random(in: 0..<10, using: &g)) },  // many ties
            (0..<count).map { _ in Float(g.nextDouble()) },
            (0..<count).map { Float($0) },  // ascending
            (0..<count).map { Float(-$0) },  // descending
            [Float](repeating: 1, count: count),
        ]
        for values in patterns {
            var c = values.enumerated().map { SamplingCandidate(value: $0.element, id: Int32($0.offset)) }
            c.shuffle(using: &g)
            c.withUnsafeMutableBufferPointer { CandidateOrder.sort($0, 0, count, by: SamplingCandidate.ranksBefore) }
            let want = values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
            #expect(c.map { Int($0.id) } == want)
            c.withUnsafeMutableBufferPointer { CandidateOrder.sort($0, 0, count, by: SamplingCandidate.idBefore) }
            #expect(c.map { Int($0.id) } == Array(0..<count))
        }
    }

    @Test(arguments: [1, 3, 40, 999, 1000])
    func topKSelectionIsSortedBestFirst(k: Int) {
        let l = (0..<1000).map { Float(($0 * 7919) % 257) }  // plenty of ties
        var c = [SamplingCandidate](repeating: SamplingCandidate(), count: k)
        l.withUnsafeBufferPointer { lb in c.withUnsafeMutableBufferPointer { CandidateOrder.selectTopK(lb, k, into: $0) } }
        let want = l.indices.sorted { l[$0] > l[$1] || (l[$0] == l[$1] && $0 < $1) }.prefix(k)
        #expect(c.map { Int($0.id) } == Array(want))
    }
}
