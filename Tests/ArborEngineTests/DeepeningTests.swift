import ArborModels
import ArborTestSupport
import ArborTokenizers
import Testing

@testable import ArborEngine

/// A profile like the remote 1.5B target on the EPYC VM behind 20 ms: scoring 1–3 tokens costs
/// about one pass, the 4th token a fifth of one more (`arbor bench batch --threads 1`: 31.2,
/// 33.2, 33.9, 40.9, 42.9, 49.0 ms for 1…6 tokens), a draft step 19 ms, acceptance 0.7 per depth.
func steppedProfile(acceptance: Double = 0.7) -> CostProfile {
    var p = remoteProfile(overhead: 20, acceptance: acceptance)
    let measured = [31.2, 33.2, 33.9, 40.9, 42.9, 49.0, 55.0, 62.7, 73.0, 84.0]
    for (i, ms) in measured.enumerated() {
        p.targetMilliseconds[i + 1] = ms
        p.targetSamples[i + 1] = 10
    }
    p.draftStepMilliseconds = [19]
    p.draftStepJoules = [0.11]
    return p
}

@Suite("Deepening drafts past the planned depth")
struct DeepeningTests {
    func policy(_ profile: CostProfile, cs: Double, deepening: Bool = true, deepens: Bool = true) -> RoundPolicy {
        var c = SpeculationConfiguration(budget: DraftBudget(maxNodes: 16, maxDepth: 8, maxWidth: 1),
                                         preferences: CostPreferences(objective: .totalCost, cs: CostSensitivity(cs)))
        c.deepening = deepening
        let p = RoundPolicy(configuration: c, drafterCostsTime: true, profile: profile)
        p.drafterDeepens = deepens
        return p
    }

    @Test("A plan sized for the average path lets a surer path go deeper; off, or with a drafter that cannot, it does not", arguments: [0.0, 1.0])
    func planDeepens(cs: Double) throws {
        let profile = steppedProfile()
        let plan = policy(profile, cs: cs).plan(remaining: 100, room: 1000)
        let planned = plan.budget.plannedDepth
        #expect(planned >= 1 && planned < 8, "\(plan)")
        let deepening = try #require(plan.budget.deepening, "\(plan)")
        #expect(plan.budget.maxDepth == 8 && plan.budget.maxNodes == 8)
        // The plan already judged the average path at its depth not worth another level: the bar
        // lies above that path's probability, and below certainty.
        var reach = 1.0
        for d in 1...planned { reach *= profile.depthAcceptance(d) }
        #expect(deepening.minPathProbability > reach && deepening.minPathProbability <= 1, "bar \(deepening.minPathProbability), reach \(reach)")
        #expect(deepening.calibration.count == 10)
        // The same round without deepening, and with a drafter that would draft every level.
        for off in [policy(profile, cs: cs, deepening: false), policy(profile, cs: cs, deepens: false)] {
            let p = off.plan(remaining: 100, room: 1000)
            #expect(p.budget.deepening == nil && p.budget.maxDepth == planned && p.budget.plannedDepth == planned)
        }
    }

    @Test("A sure path under the bar's probability scores better one level deeper than stopping; an unsure one does not")
    func barIsWhereDeepeningPays() throws {
        let p = policy(steppedProfile(), cs: 1)
        let plan = p.plan(remaining: 100, room: 1000)
        let bar = try #require(plan.budget.deepening).minPathProbability
        let d = plan.budget.plannedDepth
        // The chain as planned, with its nodes' path probabilities 0.7, 0.49 …, and the same
        // chain with k more levels under a leaf of path probability q.
        var expected = 0.0, reach = 1.0
        for i in 1...d { reach *= 0.7; expected += reach }
        let step = p.profile.draftStep(width: 1)
        let stop = p.predict(nodes: d, accepted: expected, draftMilliseconds: Double(d) * step.milliseconds, draftJoules: Double(d) * step.joules)
        func deeper(_ q: Double, _ k: Int) -> RoundPrediction {
            var gain = 0.0, chain = 1.0
            for _ in 0..<k { chain *= 0.7; gain += chain }
            return p.predict(nodes: d + k, accepted: expected + q * gain, draftMilliseconds: Double(d + k) * step.milliseconds,
                             draftJoules: Double(d + k) * step.joules)
        }
        let score = p.scorer()
        #expect((1...(8 - d)).contains { score(deeper(min(1, bar * 1.02), $0)) < score(stop) })
        #expect(!(1...(8 - d)).contains { score(deeper(bar * 0.98, $0)) < score(stop) })
    }

    @Test("A deepened round's draft time is learned per level drafted, not per level allowed")
    func draftStepPerLevelDrafted() throws {
        let p = policy(steppedProfile(), cs: 1)
        let plan = p.plan(remaining: 100, room: 1000)
        #expect(plan.budget.maxDepth == 8 && plan.budget.deepening != nil)
        // The draft stopped at depth 3: three forward passes of 19 ms.
        let tree = TokenTree(chain: [5, 6, 7], confidences: [0.9, 0.9, 0.9])
        let draft = Draft(tree: tree, cost: DraftCost(milliseconds: 57, steps: 3))
        let result = VerificationResult(acceptedNodes: [0, 1, 2], nextToken: 8, batchSize: 4, targetMilliseconds: 40.9)
        for _ in 0..<20 {
            p.observe(RoundRecord(plan: plan, draft: draft, sent: tree, prediction: p.predict(nodes: 3, accepted: 2), result: result,
                                  use: ResourceUse(), milliseconds: 57 + 40.9 + 20))
        }
        #expect(abs(p.profile.draftStep(width: 1).milliseconds - 19) < 0.01, "\(p.profile.draftStep(width: 1))")
    }

    @Test("The drafter expands past the planned depth only the nodes whose calibrated path clears the bar",
          arguments: TinyModel.Architecture.allCases)
    func drafterHonoursTheBar(arch: TinyModel.Architecture) throws {
        try TemporaryDirectory.with { dir in
            let t = try ModelBundle.load(path: try TinyModel(arch).write(to: dir), threads: 1)
            let prompt = t.promptTokens("the cat in the hat")
            func draft(_ deepening: DraftDeepening?) throws -> TokenTree {
                let d = try ModelDrafter(model: t.model, tokenizer: t.tokenizer, name: "self", targetTokenizer: t.tokenizer, targetName: "t")
                try d.begin(prompt: prompt, sampling: .greedy)
                var budget = DraftBudget.chain(6)
                budget.deepening = deepening
                return try d.draft(context: prompt, budget: budget).tree
            }
            // A calibration that makes every node's acceptance 0.8: path probabilities 0.8^depth.
            let sure = [Double](repeating: 0.8, count: 10)
            #expect(try draft(nil).maxDepth == 6)
            #expect(try draft(DraftDeepening(plannedDepth: 2, minPathProbability: 0, calibration: sure)).maxDepth == 6)
            #expect(try draft(DraftDeepening(plannedDepth: 2, minPathProbability: 1.01, calibration: sure)).maxDepth == 2)
            // 0.8^3 = 0.512 ≥ 0.5 > 0.8^4: depth 3 is expanded, depth 4 is not, so the chain ends at 4.
            let chain = try draft(DraftDeepening(plannedDepth: 2, minPathProbability: 0.5, calibration: sure))
            #expect(chain.maxDepth == 4 && chain.count == 4)
            // The draft's own tokens: deepening changes only where it stops.
            let full = try draft(nil)
            #expect(Array(full.tokens.prefix(4)) == chain.tokens)
        }
    }

    @Test("Deepened drafts reproduce plain greedy exactly, and do deepen", arguments: TinyModel.Architecture.allCases)
    func lossless(arch: TinyModel.Architecture) throws {
        try withTargetAndDraft(arch, contextLength: 512) { t, d in
            // Drafts believed sure (calibrated 0.9 whatever their confidence) on a stepped target:
            // rounds are planned short and deepen.
            var profile = steppedProfile(acceptance: 0.6)
            profile.calibrationOffered = [Double](repeating: 1000, count: 10)
            profile.calibrationAccepted = [Double](repeating: 900, count: 10)
            var deepened = 0
            for (label, draftBundle) in [("same model", t), ("other model", d)] {
                for text in ["the cat in the hat", "in a hole in the ground", "a"] {
                    let prompt = t.promptTokens(text)
                    let p = GenerationParameters(maxTokens: 40, stopAtEndOfText: false)
                    let plain = try TextGenerator(model: t.model, tokenizer: t.tokenizer).generate(promptTokens: prompt, parameters: p)
                    let drafter = try ModelDrafter(model: draftBundle.model, tokenizer: draftBundle.tokenizer, name: label,
                                                   targetTokenizer: t.tokenizer, targetName: "t")
                    var config = SpeculationConfiguration(budget: DraftBudget(maxNodes: 8, maxDepth: 8, maxWidth: 1),
                                                          preferences: CostPreferences(objective: .totalCost, cs: CostSensitivity(1)))
                    config.deepening = true
                    let g = SpeculativeGenerator(verifier: LocalVerifier(model: t.model), drafter: drafter, tokenizer: t.tokenizer,
                                                 configuration: config, profile: profile)
                    let r = try g.generate(promptTokens: prompt, parameters: p)
                    #expect(r.tokens == plain.tokens, "\(label), \(text)")
                    deepened += r.stats.speculative!.deepenedRounds
                }
            }
            #expect(deepened > 0)
        }
    }
}
