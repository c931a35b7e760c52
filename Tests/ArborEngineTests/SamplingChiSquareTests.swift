import Foundation
import Testing

@testable import ArborEngine

/// Result of a Pearson goodness-of-fit test of a sampler's draws against its own
/// `probabilities()`.
struct GoodnessOfFit: CustomStringConvertible {
    var statistic: Double
    var degreesOfFreedom: Int
    var critical: Double
    /// Draws of tokens the sampler claims have probability 0 (must be none).
    var impossibleDraws: Int

    var passes: Bool { impossibleDraws == 0 && statistic <= critical }
    var description: String {
        "χ² = \(statistic) (df \(degreesOfFreedom), critical \(critical)), impossible draws \(impossibleDraws)"
    }
}

/// Upper 0.1 % quantile of χ²(df) by the Wilson–Hilferty approximation (z = 3.0902).
func chiSquareCritical(df: Int) -> Double {
    let k = Double(df)
    let z = 3.0902
    let a = 2 / (9 * k)
    return k * pow(1 - a + z * a.squareRoot(), 3)
}

/// Draws `draws` tokens with `sampler.sample(logits:history:)` and compares the counts with
/// `sampler.probabilities(logits:history:)`. Bins with expected count < 5 are pooled.
func goodnessOfFit(
    _ sampler: inout some Sampler, logits: [Float], history: [Int32], draws: Int
) -> GoodnessOfFit {
    let p = sampler.probabilities(logits: logits, history: history)
    var counts = [Int](repeating: 0, count: logits.count)
    for _ in 0..<draws { counts[Int(sampler.sample(logits: logits, history: history))] += 1 }
    var impossible = 0
    var statistic = 0.0
    var bins = 0
    var pooledExpected = 0.0
    var pooledObserved = 0
    for i in logits.indices {
        if p[i] == 0 {
            impossible += counts[i]
            continue
        }
        let expected = Double(draws) * Double(p[i])
        if expected < 5 {
            pooledExpected += expected
            pooledObserved += counts[i]
            continue
        }
        statistic += pow(Double(counts[i]) - expected, 2) / expected
        bins += 1
    }
    if pooledExpected > 0 {
        statistic += pow(Double(pooledObserved) - pooledExpected, 2) / pooledExpected
        bins += 1
    }
    let df = max(bins - 1, 1)
    return GoodnessOfFit(statistic: statistic, degreesOfFreedom: df, critical: chiSquareCritical(df: df),
                         impossibleDraws: impossible)
}

/// Test-the-test: reports correct probabilities but forgets the temperature when drawing.
struct SkipsTemperatureSampler: Sampler {
    var honest: StandardSampler
    var broken: StandardSampler

    init(_ p: SamplingParameters) {
        honest = makeSampler(p)
        var q = p
        q.temperature = 1
        broken = makeSampler(q)
    }

    mutating func sample(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> Int32 {
        broken.sample(logits: logits, history: history)
    }

    mutating func probabilities(
        logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>, into output: UnsafeMutableBufferPointer<Float>
    ) {
        honest.probabilities(logits: logits, history: history, into: output)
    }

    mutating func nextUniform() -> Double { broken.nextUniform() }
}

/// Test-the-test: applies min-p *after* temperature (a plausible ordering bug).
struct LateMinPSampler: Sampler {
    var honest: StandardSampler
    var broken: StandardSampler
    let minP: Float

    init(_ p: SamplingParameters) {
        honest = makeSampler(p)
        var q = p
        q.minP = 0
        broken = makeSampler(q)
        minP = p.minP
    }

    mutating func sample(logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>) -> Int32 {
        // Full pipeline without min-p, then min-p on the post-temperature distribution.
        var probs = broken.probabilities(logits: logits, history: history)
        let cut = (probs.max() ?? 0) * minP
        for i in probs.indices where probs[i] < cut { probs[i] = 0 }
        return broken.sample(from: probs)
    }

    mutating func probabilities(
        logits: UnsafeBufferPointer<Float>, history: some Collection<Int32>, into output: UnsafeMutableBufferPointer<Float>
    ) {
        honest.probabilities(logits: logits, history: history, into: output)
    }

    mutating func nextUniform() -> Double { broken.nextUniform() }
}

@Suite("Sampling χ² goodness of fit")
struct SamplingChiSquareTests {
    static let logits = gaussianLogits(count: 16, scale: 1.5, seed: 16)
    static let history: [Int32] = [3, 3, 7, 11, 0]
    static let draws = 20_000

    static let combos: [SamplingParameters] = [
        SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1),
        SamplingParameters(temperature: 0.6, topK: 8, topP: 1, minP: 0, seed: 2),
        SamplingParameters(temperature: 1.4, topK: 0, topP: 0.9, minP: 0, seed: 3),
        SamplingParameters(temperature: 0.9, topK: 0, topP: 1, minP: 0.05, seed: 4),
        SamplingParameters(temperature: 1.6, topK: 12, topP: 0.97, minP: 0.02, repetitionPenalty: 1.3, seed: 5),
        SamplingParameters(temperature: 0.8, seed: 6),  // llama.cpp defaults
    ]

    @Test(arguments: combos)
    func drawsFollowProbabilities(params: SamplingParameters) {
        var sampler = makeSampler(params)
        let fit = goodnessOfFit(&sampler, logits: Self.logits, history: Self.history, draws: Self.draws)
        #expect(fit.passes, "\(params): \(fit)")
    }

    @Test func drawsFollowProbabilitiesAcrossSeeds() {
        // Not one lucky seed: at α = 0.001, ten seeds should essentially all pass.
        var failures = 0
        for seed in UInt64(100)..<110 {
            var sampler = makeSampler(SamplingParameters(temperature: 0.7, topK: 10, topP: 0.95, minP: 0.01, seed: seed))
            if !goodnessOfFit(&sampler, logits: Self.logits, history: Self.history, draws: Self.draws).passes {
                failures += 1
            }
        }
        #expect(failures <= 1)
    }

    @Test(arguments: [Float(0.5), 2])
    func checkCatchesSamplerThatSkipsTemperature(temperature: Float) {
        var sampler = SkipsTemperatureSampler(SamplingParameters(temperature: temperature, topK: 0, topP: 1, minP: 0, seed: 7))
        let fit = goodnessOfFit(&sampler, logits: Self.logits, history: Self.history, draws: Self.draws)
        #expect(!fit.passes, "a sampler that ignores temperature must fail: \(fit)")
        #expect(fit.statistic > 10 * fit.critical)
    }

    @Test func checkCatchesMinPAppliedAfterTemperature() {
        var sampler = LateMinPSampler(SamplingParameters(temperature: 2, topK: 0, topP: 1, minP: 0.2, seed: 8))
        let fit = goodnessOfFit(&sampler, logits: Self.logits, history: Self.history, draws: Self.draws)
        #expect(!fit.passes, "late min-p must fail: \(fit)")
    }

    @Test func criticalValuesAreSane() {
        // Tabulated χ²₀.₉₉₉: df 1 → 10.83, df 5 → 20.52, df 15 → 37.70.
        #expect(abs(chiSquareCritical(df: 5) - 20.52) < 0.3)
        #expect(abs(chiSquareCritical(df: 15) - 37.70) < 0.3)
    }
}
