import Foundation
import Testing

@testable import ArborEngine

// MARK: - Shared helpers for the sampling tests

/// A deliberately naive, obviously-correct transcription of the llama.cpp chain (penalties →
/// top-k → top-p → min-p → temperature → softmax) using a full sort and `Double` arithmetic.
/// The optimised ``StandardSampler`` must agree with it.
func referenceProbabilities(logits: [Float], history: [Int32], _ p: SamplingParameters) -> [Double] {
    var l = logits
    if p.repetitionPenalty != 1 && p.repetitionLastN > 0 {
        for t in Set(history.suffix(p.repetitionLastN)) where t >= 0 && Int(t) < l.count {
            let x = logits[Int(t)]
            l[Int(t)] = x > 0 ? x / p.repetitionPenalty : x * p.repetitionPenalty
        }
    }
    var out = [Double](repeating: 0, count: l.count)
    if p.temperature == 0 {
        var best = 0
        for i in l.indices where l[i] > l[best] { best = i }
        out[best] = 1
        return out
    }
    // Full sort, best first, lowest id on ties.
    var order = Array(l.indices).sorted { l[$0] > l[$1] || (l[$0] == l[$1] && $0 < $1) }
    if p.topK > 0 && p.topK < order.count { order = Array(order.prefix(p.topK)) }
    let maxLogit = Double(l[order[0]])
    if p.topP < 1 {
        let z = order.reduce(0.0) { $0 + exp(Double(l[$1]) - maxLogit) }
        var cumulative = 0.0
        var keep = order.count
        for (j, i) in order.enumerated() {
            cumulative += exp(Double(l[i]) - maxLogit) / z
            if cumulative >= Double(p.topP) {
                keep = j + 1
                break
            }
        }
        order = Array(order.prefix(keep))
    }
    if p.minP > 0 {
        let cut = l[order[0]] + logf(p.minP)
        order = [order[0]] + order.dropFirst().filter { l[$0] >= cut }
    }
    let t = Double(p.temperature)
    let z = order.reduce(0.0) { $0 + exp((Double(l[$1]) - maxLogit) / t) }
    for i in order { out[i] = exp((Double(l[i]) - maxLogit) / t) / z }
    return out
}

/// Seeded standard-normal logits (Box–Muller over ``Xoshiro256StarStar``).
func gaussianLogits(count: Int, scale: Float, seed: UInt64) -> [Float] {
    var g = Xoshiro256StarStar(seed: seed)
    return (0..<count).map { _ in
        let u1 = max(g.nextDouble(), 1e-300)
        let u2 = g.nextDouble()
        return scale * Float(sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2))
    }
}

/// Compares supports: everything we keep must be kept by the reference, and everything the
/// reference keeps with non-negligible mass (> 1e-30; Float underflows below ~1e-45) must be
/// kept by us. Returns a short description of the mismatch, or nil.
func supportMismatch(_ got: [Float], _ want: [Double]) -> String? {
    let extra = got.indices.filter { got[$0] > 0 && want[$0] == 0 }
    let missing = want.indices.filter { want[$0] > 1e-30 && got[$0] == 0 }
    if extra.isEmpty && missing.isEmpty { return nil }
    return "extra \(extra.prefix(10)) (\(extra.count)), missing \(missing.prefix(10)) (\(missing.count))"
}

func makeSampler(_ p: SamplingParameters) -> StandardSampler {
    do { return try StandardSampler(parameters: p) } catch { fatalError("invalid test parameters: \(error)") }
}

// MARK: - Reference agreement

@Suite("StandardSampler vs reference")
struct SamplingReferenceTests {
    static let combos: [SamplingParameters] = [
        SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0),
        SamplingParameters(),  // llama.cpp defaults
        SamplingParameters(temperature: 0.7, topK: 50, topP: 1, minP: 0),
        SamplingParameters(temperature: 1.2, topK: 0, topP: 0.9, minP: 0),
        SamplingParameters(temperature: 1, topK: 0, topP: 0.999, minP: 0),
        SamplingParameters(temperature: 0.5, topK: 0, topP: 1, minP: 0.1),
        SamplingParameters(temperature: 1, topK: 0, topP: 0.95, minP: 0.001),
        SamplingParameters(temperature: 0.9, topK: 300, topP: 0.8, minP: 0.02, repetitionPenalty: 1.3),
        SamplingParameters(temperature: 2, topK: 1, topP: 1, minP: 0),
        SamplingParameters(temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1.5),
    ]

    @Test(arguments: [(1000, Float(1)), (1000, 4), (20000, 0.5), (20000, 3), (20000, 12)])
    func agreesWithReference(vocab: Int, scale: Float) {
        let logits = gaussianLogits(count: vocab, scale: scale, seed: UInt64(vocab) &* 31 &+ UInt64(scale * 8))
        let history: [Int32] = (0..<200).map { Int32(($0 * 7919) % vocab) }
        for params in Self.combos {
            let sampler = makeSampler(params)
            let got = sampler.probabilities(logits: logits, history: history)
            let want = referenceProbabilities(logits: logits, history: history, params)
            #expect(got.count == vocab)
            let mismatch = supportMismatch(got, want)
            #expect(mismatch == nil, "support differs for \(params): \(mismatch ?? "")")
            var maxErr = 0.0
            for i in 0..<vocab { maxErr = max(maxErr, abs(Double(got[i]) - want[i])) }
            #expect(maxErr < 1e-5, "max |Δp| = \(maxErr) for \(params)")
            let sum = got.reduce(0.0) { $0 + Double($1) }
            #expect(abs(sum - 1) < 1e-5)
        }
    }

    /// Plateaus of equal logits exercise the tie rule in top-k, top-p and the band sort.
    @Test func agreesWithReferenceOnTies() {
        let logits: [Float] = (0..<5000).map { Float(($0 * 37) % 11) * 0.75 }
        for params in Self.combos {
            let sampler = makeSampler(params)
            let got = sampler.probabilities(logits: logits, history: [Int32]())
            let want = referenceProbabilities(logits: logits, history: [], params)
            let mismatch = supportMismatch(got, want)
            #expect(mismatch == nil, "\(params): \(mismatch ?? "")")
            let maxErr = logits.indices.map { abs(Double(got[$0]) - want[$0]) }.max() ?? 0
            #expect(maxErr < 1e-5, "\(params)")
        }
    }

    /// Mixed-magnitude logits (a few dominant, a long flat tail) force the top-p band search
    /// past its first bands.
    @Test func topPBandWidening() {
        var logits = gaussianLogits(count: 30000, scale: 0.3, seed: 77)
        for i in stride(from: 0, to: 30000, by: 997) { logits[i] += 12 }
        for top in [Float(0.3), 0.9, 0.99, 0.9999] {
            let params = SamplingParameters(temperature: 1, topK: 0, topP: top, minP: 0)
            let sampler = makeSampler(params)
            let got = sampler.probabilities(logits: logits, history: [Int32]())
            let want = referenceProbabilities(logits: logits, history: [], params)
            let mismatch = supportMismatch(got, want)
            #expect(mismatch == nil, "topP \(top): \(mismatch ?? "")")
        }
    }
}
