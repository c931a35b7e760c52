import ArborEngine
import ArborGGUF
import ArborModels
import ArborTestSupport
import ArborTokenizers
import Foundation
import Testing

@testable import ArborEngine

/// Passes drafts through, telling `record` each tree's depth.
final class DepthRecorder: Drafter {
    let inner: any Drafter
    let record: (Int) -> Void
    var name: String { inner.name }

    init(_ inner: any Drafter, record: @escaping (Int) -> Void) {
        self.inner = inner
        self.record = record
    }

    func begin(prompt: [Int32], sampling: SamplingParameters) throws { try inner.begin(prompt: prompt, sampling: sampling) }
    func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        let d = try inner.draft(context: context, budget: budget)
        record(d.tree.maxDepth)
        return d
    }
    func catchUp(context: [Int32]) throws { try inner.catchUp(context: context) }
    func end(context: [Int32], promptCount: Int) { inner.end(context: context, promptCount: promptCount) }
}

/// Sampled speculative output must follow the target's distribution. A table model with six
/// live tokens runs through the real speculative loop (verifier, caches, stop rules); the first
/// three generated tokens of many seeded runs are compared with the exact distribution of
/// three-token continuations (216 cells) by Pearson's χ² at the 0.1 % level.
@Suite("Speculative sampling follows the target distribution")
struct SpeculativeSamplingTests {
    static let live: [Int32] = [40, 41, 42, 43, 44, 45]
    static let prompt: [Int32] = [10, 11, 12]
    static let runs = 6_000

    static let settings: [(String, SamplingParameters)] = {
        var a = SamplingParameters(temperature: 0.7, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1, seed: 0)
        a.repetitionLastN = 0
        var b = SamplingParameters(temperature: 1.0, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1, seed: 0)
        b.repetitionLastN = 0
        return [("T=0.7 top-p 0.9", a), ("T=1.0 top-p 0.95", b)]
    }()

    func withModels<T>(_ body: (TableModel, TableModel, any Tokenizer) throws -> T) throws -> T {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.llama).write(to: dir)
            let config = try ModelConfiguration(file: GGUFFile(path: path))
            let bundle = try ModelBundle.load(path: path, threads: 1)
            return try body(TableModel(configuration: config, live: Self.live, seed: 1),
                            TableModel(configuration: config, live: Self.live, seed: 2, spread: 1.0), bundle.tokenizer)
        }
    }

    /// Exact probability of each three-token continuation under the target's sampling transform.
    func exact(_ target: TableModel, _ sampling: SamplingParameters) throws -> [[Int32]: Double] {
        let sampler = try StandardSampler(parameters: sampling)
        func p(_ seq: [Int32]) -> [Float] {
            let l = target.logits(a: seq[seq.count - 2], b: seq[seq.count - 1], position: seq.count - 1)
            return sampler.probabilities(logits: l, history: seq)
        }
        var out: [[Int32]: Double] = [:]
        let p1 = p(Self.prompt)
        for x in Self.live where p1[Int(x)] > 0 {
            let p2 = p(Self.prompt + [x])
            for y in Self.live where p2[Int(y)] > 0 {
                let p3 = p(Self.prompt + [x, y])
                for z in Self.live where p3[Int(z)] > 0 {
                    out[[x, y, z]] = Double(p1[Int(x)]) * Double(p2[Int(y)]) * Double(p3[Int(z)])
                }
            }
        }
        return out
    }

    /// χ² of `runs` speculative generations against the exact distribution.
    func chiSquare(pointMass: Bool, sampling: SamplingParameters, broken: Bool = false) throws -> (GoodnessOfFit, Double) {
        try withModels { target, draftTable, tokenizer in
            let budget = pointMass ? DraftBudget(maxNodes: 6, maxDepth: 2, maxWidth: 3) : DraftBudget.chain(3)
            return try chiSquare(target: target, tokenizer: tokenizer, sampling: sampling, budget: budget, broken: broken) { run in
                TableDrafter(model: draftTable, seed: UInt64(run) &+ 99, pointMass: pointMass)
            }
        }
    }

    /// χ² of `runs` speculative generations with the drafters `makeDrafter` builds (one per run).
    func chiSquare(target: TableModel, tokenizer: any Tokenizer, sampling: SamplingParameters, budget: DraftBudget,
                   broken: Bool, makeDrafter: (Int) throws -> any Drafter) throws -> (GoodnessOfFit, Double) {
        do {
            let expected = try exact(target, sampling)
            var counts: [[Int32]: Int] = [:]
            var accepted = 0, drafted = 0
            for run in 0..<Self.runs {
                var s = sampling
                s.seed = UInt64(run) &* 2_654_435_761 &+ 17
                let verifier = LocalVerifier(model: target)
                verifier.brokenAcceptanceForTesting = broken
                let drafter = try makeDrafter(run)
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: tokenizer,
                                             configuration: SpeculationConfiguration(budget: budget, adaptive: false))
                let r = try g.generate(promptTokens: Self.prompt, parameters: GenerationParameters(maxTokens: 3, sampling: s, stopAtEndOfText: false))
                counts[r.tokens, default: 0] += 1
                accepted += r.stats.speculative!.acceptedNodes
                drafted += r.stats.speculative!.draftedNodes
            }
            // Pool cells with expected count < 5.
            var statistic = 0.0, cells = 0, pooledE = 0.0, pooledO = 0.0
            var impossible = 0
            for (seq, n) in counts where expected[seq] == nil { impossible += n }
            for (seq, prob) in expected {
                let e = prob * Double(Self.runs), o = Double(counts[seq] ?? 0)
                if e < 5 { pooledE += e; pooledO += o; continue }
                statistic += (o - e) * (o - e) / e
                cells += 1
            }
            if pooledE > 0 { statistic += (pooledO - pooledE) * (pooledO - pooledE) / pooledE; cells += 1 }
            let df = max(cells - 1, 1)
            return (GoodnessOfFit(statistic: statistic, degreesOfFreedom: df, critical: chiSquareCritical(df: df), impossibleDraws: impossible),
                    Double(accepted) / Double(max(drafted, 1)))
        }
    }

    @Test("p/q rule (sampled draft chains) and point-mass rule (deterministic trees)",
          arguments: [false, true], [0, 1])
    func followsTarget(pointMass: Bool, setting: Int) throws {
        let (name, sampling) = Self.settings[setting]
        let (fit, acceptance) = try chiSquare(pointMass: pointMass, sampling: sampling)
        #expect(fit.passes, "\(pointMass ? "point-mass" : "p/q") \(name): \(fit)")
        // The drafts were really used: a fair share was accepted, and not all.
        #expect(acceptance > 0.1 && acceptance < 0.95, "acceptance \(acceptance)")
    }

    @Test("A wrong acceptance rule (drawing from p instead of the residual) fails the same test",
          arguments: [false, true])
    func catchesWrongRule(pointMass: Bool) throws {
        let (fit, _) = try chiSquare(pointMass: pointMass, sampling: Self.settings[1].1, broken: true)
        #expect(!fit.passes, "the broken rule went unnoticed: \(fit)")
    }

    /// The cross-vocabulary drafter: a draft table over another vocabulary (the same six
    /// characters under other ids) drafts through text; its chains arrive as target tokens.
    func crossChiSquare(sampling: SamplingParameters, broken: Bool) throws -> (GoodnessOfFit, Double) {
        try withModels { target, _, tokenizer in
            try TemporaryDirectory.with { dir in
                var alternate = TinyModel(.llama)
                alternate.vocabularyKind = .alternate
                let path = try alternate.write(to: dir)
                let draftBundle = try ModelBundle.load(path: path, threads: 1)
                // The same characters in the draft's vocabulary (its byte tokens are reversed).
                let live = Self.live.map { draftBundle.tokenizer.encode(tokenizer.decode([$0]), addSpecial: false, parseSpecial: false)[0] }
                #expect(live != Self.live)
                // The draft table is the target's own function of the text (seed 1), so its greedy
                // chains are the target's most likely continuations, under other ids: a fair share
                // is accepted only if the translation through text is right.
                var canonical: [Int32: Int32] = [:]
                for id in 0..<Int32(draftBundle.tokenizer.vocabularySize) {
                    let ids = tokenizer.encode(draftBundle.tokenizer.decode([id], renderSpecial: true), addSpecial: false, parseSpecial: true)
                    if ids.count == 1 { canonical[id] = ids[0] }
                }
                let draftTable = TableModel(configuration: draftBundle.model.configuration, live: live, seed: 1, canonical: canonical)
                return try chiSquare(target: target, tokenizer: tokenizer, sampling: sampling, budget: .chain(3), broken: broken) { _ in
                    CrossVocabularyDrafter(model: draftTable, tokenizer: draftBundle.tokenizer, name: "table", targetTokenizer: tokenizer)
                }
            }
        }
    }

    @Test("Drafting across vocabularies (point masses in the target's vocabulary)", arguments: [0, 1])
    func crossVocabularyFollowsTarget(setting: Int) throws {
        let (name, sampling) = Self.settings[setting]
        let (fit, acceptance) = try crossChiSquare(sampling: sampling, broken: false)
        #expect(fit.passes, "cross-vocabulary \(name): \(fit)")
        // An unrelated draft table gets about 0.08 here; the same function under other ids 0.24–0.30.
        #expect(acceptance > 0.2 && acceptance < 0.95, "acceptance \(acceptance)")
    }

    /// A draft model's sampled chains that deepen past depth 1 only when the first token's
    /// calibrated probability clears a bar (`DraftDeepening`): where a chain stops depends on its
    /// own samples, which must leave each position's p/q test exact.
    func deepeningChiSquare(sampling: SamplingParameters, broken: Bool) throws -> (GoodnessOfFit, [Int]) {
        try withModels { target, draftTable, tokenizer in
            var budget = DraftBudget.chain(3)
            budget.deepening = DraftDeepening(plannedDepth: 1, minPathProbability: 0.2, calibration: (0..<10).map { (Double($0) + 0.5) / 10 })
            var depths = [0, 0, 0, 0]
            let (fit, _) = try chiSquare(target: target, tokenizer: tokenizer, sampling: sampling, budget: budget, broken: broken) { _ in
                DepthRecorder(try ModelDrafter(model: draftTable, tokenizer: tokenizer, name: "table", targetTokenizer: tokenizer, targetName: "t")) {
                    depths[min($0, 3)] += 1
                }
            }
            return (fit, depths)
        }
    }

    @Test("A draft model's sampled chains that deepen by their own confidence", arguments: [0, 1])
    func deepenedChainsFollowTarget(setting: Int) throws {
        let (name, sampling) = Self.settings[setting]
        let (fit, depths) = try deepeningChiSquare(sampling: sampling, broken: false)
        #expect(fit.passes, "deepening \(name): \(fit)")
        // Both outcomes of the bar occurred: chains that stopped at the planned depth, and deeper ones.
        #expect(depths[1] > 100 && depths[2] > 100, "chains by depth \(depths)")
    }

    @Test("Deepened chains: the wrong rule fails the same test")
    func deepenedChainsCatchWrongRule() throws {
        let (fit, _) = try deepeningChiSquare(sampling: Self.settings[1].1, broken: true)
        #expect(!fit.passes, "the broken rule went unnoticed: \(fit)")
    }

    @Test("Drafting across vocabularies: the wrong rule fails the same test")
    func crossVocabularyCatchesWrongRule() throws {
        let (fit, _) = try crossChiSquare(sampling: Self.settings[1].1, broken: true)
        #expect(!fit.passes, "the broken rule went unnoticed: \(fit)")
    }
}
