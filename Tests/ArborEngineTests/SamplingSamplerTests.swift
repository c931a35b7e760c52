import Foundation
import Testing

@testable import ArborEngine

private let none: [Int32] = []

private func params(
    temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0,
    repetitionPenalty: Float = 1, repetitionLastN: Int = 64, seed: UInt64 = 0
) -> SamplingParameters {
    SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                       repetitionPenalty: repetitionPenalty, repetitionLastN: repetitionLastN, seed: seed)
}

private func softmax(_ x: [Double]) -> [Double] {
    let m = x.max()!
    let e = x.map { exp($0 - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

private func expectClose(_ got: [Float], _ want: [Double], tolerance: Double = 1e-6,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, sourceLocation: sourceLocation)
    let worst = zip(got, want).map { abs(Double($0) - $1) }.max() ?? 0
    #expect(worst <= tolerance, "got \(got.prefix(16)), want \(want.prefix(16))", sourceLocation: sourceLocation)
}

/// Probabilities 0.5, 0.25, 0.15, 0.1 placed at ids 2, 0, 3, 1 (so id order ≠ rank order).
private let fourLogits: [Float] = [log(0.25), log(0.1), log(0.5), log(0.15)]

@Suite("StandardSampler")
struct SamplingSamplerTests {
    // MARK: Greedy

    @Test func greedyIsArgmax() {
        var s = makeSampler(.greedy)
        #expect(s.sample(logits: [0.1, 3, -2, 2.9], history: none) == 1)
        #expect(s.sample(logits: [-5, -4, -4.5], history: none) == 1)
        #expect(s.probabilities(logits: [0.1, 3, -2, 2.9], history: none) == [0, 1, 0, 0])
    }

    @Test func greedyTiesGoToLowestId() {
        var s = makeSampler(.greedy)
        #expect(s.sample(logits: [1, 7, 3, 7, 7], history: none) == 1)
        #expect(s.sample(logits: [2, 2, 2], history: none) == 0)
        #expect(s.sample(logits: [-.infinity, -.infinity], history: none) == 0)
    }

    @Test func greedyIgnoresFiltersAndConsumesNoRandomness() {
        var s = makeSampler(params(temperature: 0, topK: 2, topP: 0.5, minP: 0.5, seed: 3))
        let before = s.rng
        for _ in 0..<10 { #expect(s.sample(logits: [0, 1, 5, 2], history: none) == 2) }
        #expect(s.rng == before)
    }

    // MARK: Reproducibility

    @Test func sameSeedSameTokensDifferentSeedsDiffer() {
        let logits = gaussianLogits(count: 64, scale: 1, seed: 1)
        func run(_ seed: UInt64) -> [Int32] {
            var s = makeSampler(params(temperature: 1, seed: seed))
            return (0..<200).map { _ in s.sample(logits: logits, history: none) }
        }
        #expect(run(42) == run(42))
        #expect(run(42) != run(43))
        var s = makeSampler(params(temperature: 1, seed: 42))
        let first = (0..<50).map { _ in s.sample(logits: logits, history: none) }
        s.reset()
        #expect((0..<50).map { _ in s.sample(logits: logits, history: none) } == first)
    }

    /// `sample(logits:)` is exactly `sample(from: probabilities(logits:))` for the same state.
    @Test func sampleEqualsSampleFromProbabilities() {
        let logits = gaussianLogits(count: 500, scale: 2, seed: 9)
        let history: [Int32] = [3, 4, 5, 3, 400]
        for p in SamplingReferenceTests.combos {
            var a = makeSampler(SamplingParameters(
                temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP,
                repetitionPenalty: p.repetitionPenalty, repetitionLastN: p.repetitionLastN, seed: 11))
            var b = a
            let probs = b.probabilities(logits: logits, history: history)
            for _ in 0..<100 {
                #expect(a.sample(logits: logits, history: history) == b.sample(from: probs))
            }
            #expect(a.rng == b.rng)
        }
    }

    @Test func probabilitiesDoesNotConsumeRandomness() {
        var s = makeSampler(params(seed: 5))
        let before = s.rng
        _ = s.probabilities(logits: fourLogits, history: none)
        var out = [Float](repeating: 9, count: 4)
        s.probabilities(logits: fourLogits, history: none, into: &out)
        #expect(s.rng == before)
        #expect(out == s.probabilities(logits: fourLogits, history: none))
    }

    // MARK: Top-k

    @Test func topKKeepsExactlyK() {
        let logits = gaussianLogits(count: 1000, scale: 2, seed: 4)
        let ranked = logits.indices.sorted { logits[$0] > logits[$1] }
        for k in [1, 2, 5, 40, 999] {
            let s = makeSampler(params(topK: k))
            let p = s.probabilities(logits: logits, history: none)
            let kept = Set(p.indices.filter { p[$0] > 0 })
            #expect(kept.count == k)
            #expect(kept == Set(ranked.prefix(k)))
            // Renormalised softmax over the k survivors.
            let z = ranked.prefix(k).reduce(0.0) { $0 + exp(Double(logits[$1])) }
            for i in ranked.prefix(k) { #expect(abs(Double(p[i]) - exp(Double(logits[i])) / z) < 1e-6) }
        }
        let all = makeSampler(params(topK: 1000))
        #expect(all.probabilities(logits: logits, history: none).allSatisfy { $0 > 0 })
    }

    @Test func topKBoundaryTiesKeepLowestIds() {
        let s = makeSampler(params(topK: 2))
        let p = s.probabilities(logits: [1, 5, 5, 5, 0], history: none)
        expectClose(p, [0, 0.5, 0.5, 0, 0])
        var one = makeSampler(params(topK: 1))
        #expect(one.sample(logits: [3, 3, 3], history: none) == 0)
    }

    // MARK: Top-p

    @Test func topPHandComputed() {
        // Sorted probabilities .5 (id 2), .25 (id 0), .15 (id 3), .1 (id 1).
        // p = 0.7: cumulative .5, .75 ≥ .7 → {2, 0}.
        let a = makeSampler(params(topP: 0.7))
        expectClose(a.probabilities(logits: fourLogits, history: none), [1.0 / 3, 0, 2.0 / 3, 0])
        // p = 0.8: .5, .75, .9 ≥ .8 → {2, 0, 3}.
        let b = makeSampler(params(topP: 0.8))
        expectClose(b.probabilities(logits: fourLogits, history: none), [0.25 / 0.9, 0, 0.5 / 0.9, 0.15 / 0.9])
        // p = 0.4: the top token alone already covers it.
        let c = makeSampler(params(topP: 0.4))
        expectClose(c.probabilities(logits: fourLogits, history: none), [0, 0, 1, 0])
        // Tiny p still keeps one token (min_keep = 1).
        var d = makeSampler(params(topP: 1e-9))
        #expect(d.sample(logits: fourLogits, history: none) == 2)
    }

    @Test func topPUsesPreTemperatureProbabilities() {
        // At T = 2 the post-temperature cumulative mass after two tokens is only ~.63, which
        // would keep three tokens; llama.cpp applies top-p before temperature → two tokens.
        let s = makeSampler(params(temperature: 2, topP: 0.7))
        let a = 0.5.squareRoot(), b = 0.25.squareRoot()
        expectClose(s.probabilities(logits: fourLogits, history: none), [b / (a + b), 0, a / (a + b), 0])
    }

    @Test func topPAppliesAfterTopK() {
        // top-k 3 renormalises to .5/.9, .25/.9, .15/.9 = .556, .278, .167;
        // p = 0.8 → .556, .833 ≥ .8 → two tokens (without top-k it would be three).
        let s = makeSampler(params(topK: 3, topP: 0.8))
        expectClose(s.probabilities(logits: fourLogits, history: none), [1.0 / 3, 0, 2.0 / 3, 0])
    }

    // MARK: Min-p

    @Test func minPHandComputed() {
        // minP .25 → threshold .125: drops only .1 (id 1).
        let a = makeSampler(params(minP: 0.25))
        expectClose(a.probabilities(logits: fourLogits, history: none), [0.25 / 0.9, 0, 0.5 / 0.9, 0.15 / 0.9])
        // minP .4 → threshold .2: keeps .5 and .25.
        let b = makeSampler(params(minP: 0.4))
        expectClose(b.probabilities(logits: fourLogits, history: none), [1.0 / 3, 0, 2.0 / 3, 0])
        // minP 1 → only the maximum.
        let c = makeSampler(params(minP: 1))
        expectClose(c.probabilities(logits: fourLogits, history: none), [0, 0, 1, 0])
    }

    @Test func minPUsesPreTemperatureProbabilities() {
        // After T = 2 every token would clear 0.4 × max; llama.cpp's min-p runs first.
        let s = makeSampler(params(temperature: 2, minP: 0.4))
        let a = 0.5.squareRoot(), b = 0.25.squareRoot()
        expectClose(s.probabilities(logits: fourLogits, history: none), [b / (a + b), 0, a / (a + b), 0])
    }

    @Test func minPAndTopPCombine() {
        // top-p .95 keeps all four (.5,.75,.9,1.0); min-p .25 then drops id 1.
        let s = makeSampler(params(topP: 0.95, minP: 0.25))
        expectClose(s.probabilities(logits: fourLogits, history: none), [0.25 / 0.9, 0, 0.5 / 0.9, 0.15 / 0.9])
        // top-p .7 is tighter than min-p .25.
        let t = makeSampler(params(topP: 0.7, minP: 0.25))
        expectClose(t.probabilities(logits: fourLogits, history: none), [1.0 / 3, 0, 2.0 / 3, 0])
    }

    // MARK: Temperature

    @Test func temperatureScalesLogits() {
        let logits: [Float] = [1, 2, 3]
        for t in [0.25, 0.5, 1, 2, 10] {
            let s = makeSampler(params(temperature: Float(t)))
            expectClose(s.probabilities(logits: logits, history: none), softmax([1 / t, 2 / t, 3 / t]))
        }
        let cold = makeSampler(params(temperature: 1e-4))
        expectClose(cold.probabilities(logits: logits, history: none), [0, 0, 1])
    }

    // MARK: Repetition penalty

    @Test func repetitionPenaltyFollowsLlamaCpp() {
        let logits: [Float] = [2, -1, 0.5, 3, 1, 0]
        // Tokens 0, 1 (twice), 5; out-of-range ids ignored. Positive / penalty, else × penalty;
        // each distinct token once; zero stays zero.
        let history: [Int32] = [0, 1, 1, 9999, -5, 5]
        let s = makeSampler(params(repetitionPenalty: 2))
        expectClose(s.probabilities(logits: logits, history: history), softmax([1, -2, 0.5, 3, 1, 0]))
        let input = logits
        #expect(input == logits)
    }

    @Test func repetitionPenaltyWindow() {
        let logits: [Float] = [2, -1, 0.5, 3]
        // lastN = 2 → only the last two history tokens (0, 1) count; 3 is outside the window.
        let s = makeSampler(params(repetitionPenalty: 2, repetitionLastN: 2))
        expectClose(s.probabilities(logits: logits, history: [3, 0, 1] as [Int32]), softmax([1, -2, 0.5, 3]))
        // lastN = 0 or penalty 1 → no effect.
        let off = makeSampler(params(repetitionPenalty: 2, repetitionLastN: 0))
        expectClose(off.probabilities(logits: logits, history: [3, 0, 1] as [Int32]), softmax([2, -1, 0.5, 3]))
        let one = makeSampler(params(repetitionPenalty: 1))
        expectClose(one.probabilities(logits: logits, history: [3, 0, 1] as [Int32]), softmax([2, -1, 0.5, 3]))
    }

    @Test func repetitionPenaltyChangesGreedyChoiceAndAcceptsAnyCollection() {
        var s = makeSampler(params(temperature: 0, repetitionPenalty: 1.5))
        // 3 / 1.5 = 2 < 2.5.
        #expect(s.sample(logits: [3, 2.5], history: none) == 0)
        #expect(s.sample(logits: [3, 2.5], history: [0] as [Int32]) == 1)
        let slice = ([7, 7, 0] as [Int32])[1...]
        #expect(s.sample(logits: [3, 2.5], history: slice) == 1)
        #expect(s.sample(logits: [3, 2.5], history: CollectionOfOne(Int32(0))) == 1)
        // No contiguous storage: the window is copied into scratch instead.
        let lazy = ([0] as [Int32]).lazy.map { $0 }
        #expect(s.sample(logits: [3, 2.5], history: lazy) == 1)
        var windowed = makeSampler(params(temperature: 0, repetitionPenalty: 1.5, repetitionLastN: 1))
        #expect(windowed.sample(logits: [3, 2.5], history: ([0, 1] as [Int32]).lazy.map { $0 }) == 0)
        #expect(windowed.sample(logits: [3, 2.5], history: ([1, 0] as [Int32]).lazy.map { $0 }) == 1)
        // Penalty < 1 rewards repetition.
        var r = makeSampler(params(temperature: 0, repetitionPenalty: 0.5))
        #expect(r.sample(logits: [3, 2.5], history: [1] as [Int32]) == 1)
    }

    // MARK: Distribution invariants

    @Test func probabilitiesSumToOneAndFilteredAreExactlyZero() {
        let logits = gaussianLogits(count: 5000, scale: 3, seed: 12)
        for p in SamplingReferenceTests.combos {
            var s = makeSampler(p)
            let probs = s.probabilities(logits: logits, history: [1, 2, 3] as [Int32])
            let sum = probs.reduce(0.0) { $0 + Double($1) }
            #expect(abs(sum - 1) < 1e-5)
            #expect(probs.allSatisfy { $0 >= 0 && $0.isFinite })
            let ref = referenceProbabilities(logits: logits, history: [1, 2, 3], p)
            for i in probs.indices where ref[i] == 0 { #expect(probs[i] == 0) }
            // Tokens outside the support are never drawn.
            for _ in 0..<50 {
                let t = s.sample(logits: logits, history: [1, 2, 3] as [Int32])
                #expect(probs[Int(t)] > 0)
            }
        }
    }

    @Test func mutableBufferAndIntoVariantsAgree() {
        var logits = gaussianLogits(count: 300, scale: 1.5, seed: 8)
        let original = logits
        var a = makeSampler(SamplingParameters(seed: 1))
        var b = a
        let fromArray = (0..<20).map { _ in a.sample(logits: original, history: none) }
        let fromBuffer = logits.withUnsafeMutableBufferPointer { buf in
            (0..<20).map { _ in b.sample(logits: buf, history: none) }
        }
        #expect(fromArray == fromBuffer)
        #expect(logits == original)
        var out: [Float] = []
        a.probabilities(logits: logits, history: none, into: &out)
        #expect(out == a.probabilities(logits: logits, history: none))
    }

    // MARK: sample(from:)

    @Test func sampleFromDistribution() {
        var s = makeSampler(params(seed: 77))
        // Only positive entries can be drawn; weights need not be normalised.
        for _ in 0..<500 {
            let t = s.sample(from: [0, 3, 0, 1, 0])
            #expect(t == 1 || t == 3)
        }
        // A single positive entry is returned without consuming randomness.
        let before = s.rng
        #expect(s.sample(from: [0, 0, 0.2]) == 2)
        #expect(s.rng == before)
        // Degenerate all-zero input falls back to the first index.
        #expect(s.sample(from: [0, 0, 0]) == 0)
        // Frequencies follow the weights.
        var counts = [0, 0, 0]
        for _ in 0..<30000 { counts[Int(s.sample(from: [1, 2, 3]))] += 1 }
        #expect(abs(Double(counts[0]) / 30000 - 1.0 / 6) < 0.01)
        #expect(abs(Double(counts[2]) / 30000 - 0.5) < 0.01)
    }

    @Test func nextUniformUsesTheSamplersGenerator() {
        var s = makeSampler(params(seed: 42))
        var g = Xoshiro256StarStar(seed: 42)
        #expect(s.nextUniform() == g.nextDouble())
    }

    // MARK: Large vocabulary

    @Test func largeVocabularyAllPaths() {
        let logits = gaussianLogits(count: 262_144, scale: 2.5, seed: 2026)
        let history: [Int32] = (0..<64).map { $0 * 4001 }
        for p in [
            SamplingParameters(seed: 1),
            params(temperature: 0.8, topP: 0.95),
            params(temperature: 0.8, minP: 0.05),
            params(temperature: 0.8),
            params(temperature: 0.7, topK: 64, repetitionPenalty: 1.1),
        ] {
            var s = makeSampler(p)
            let probs = s.probabilities(logits: logits, history: history)
            let ref = referenceProbabilities(logits: logits, history: history, p)
            let mismatch = supportMismatch(probs, ref)
            #expect(mismatch == nil, "\(p): \(mismatch ?? "")")
            let t = s.sample(logits: logits, history: history)
            #expect(probs[Int(t)] > 0)
        }
    }
}
