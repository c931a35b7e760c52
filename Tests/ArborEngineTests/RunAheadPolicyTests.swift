import ArborModels
import ArborTestSupport
import Testing

@testable import ArborEngine

/// `PipelinedLocal` that can also decode several tokens in one exchange (as `arbor serve` does
/// for a `decode` frame).
final class RunAheadLocal: PipelinedLocal, RunAheadVerifier {
    var maxRunAhead = 64
    private(set) var runAheads: [Int] = []
    func runAhead(_ count: Int) throws -> VerificationResult {
        runAheads.append(count)
        var first = try inner.verify(TokenTree())
        for _ in 1..<min(count, maxRunAhead) {
            let r = try inner.verify(TokenTree())
            first.decodedTokens.append(r.nextToken)
            first.cost.targetMilliseconds += r.cost.targetMilliseconds
            first.cost.samplingMilliseconds += r.cost.samplingMilliseconds
        }
        first.cost.roundTripMilliseconds = first.cost.targetMilliseconds + first.cost.samplingMilliseconds + overhead
        return first
    }
}

@Suite("Run-ahead rounds: the target decoding by itself when drafting does not pay")
struct RunAheadPolicyTests {
    func policy(_ profile: CostProfile, cs: Double = 0, objective: Objective = .totalCost, limit: Int = 32) -> RoundPolicy {
        let p = RoundPolicy(configuration: SpeculationConfiguration(budget: .chain(8), preferences: CostPreferences(objective: objective, cs: CostSensitivity(cs))),
                            drafterCostsTime: true, profile: profile)
        p.runAheadLimit = limit
        return p
    }

    @Test("Slow network, poor acceptance: run ahead as far as allowed; good acceptance on a fast link: draft")
    func whereRunAheadPays() {
        for cs in [0.0, 0.5] {
            #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3), cs: cs).plan(remaining: 100, room: 1000) == .runAhead(32), "cs \(cs)")
        }
        // Under energy every run-ahead size costs the same per token: the cheapest plan is the
        // longest (the fastest of the equally cheap), not two tokens per round trip.
        #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3), cs: 1, objective: .energyTotal).plan(remaining: 100, room: 1000) == .runAhead(32))
        // Cheapest per token, drafting still pays: 1.3 tokens per pass of 22 ms beat 1 per 20 ms.
        #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3), cs: 1).plan(remaining: 100, room: 1000).budget.maxDepth >= 1)
        // Only as far as the request may still go, or the context may hold.
        #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3)).plan(remaining: 5, room: 1000) == .runAhead(5))
        #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3)).plan(remaining: 100, room: 6) == .runAhead(7))
        // Without the offer: the old choice between drafting and plain rounds.
        #expect(policy(remoteProfile(overhead: 80, acceptance: 0.3), limit: 0).plan(remaining: 100, room: 1000).runAhead == 0)
        // Drafting that pays beats running ahead at speed.
        let fast = policy(remoteProfile(overhead: 0, acceptance: 0.95)).plan(remaining: 100, room: 1000)
        #expect(fast.runAhead == 0 && fast.budget.maxDepth > 2, "\(fast)")
        // A run-ahead round's prediction: one overhead, k target passes, k tokens.
        let p = policy(remoteProfile(overhead: 80))
        let r = p.predictRunAhead(16)
        #expect(r.tokens == 16 && r.runAhead == 16 && r.nodes == 0)
        #expect(abs(r.milliseconds - (80 + 16 * 20)) < 1, "\(r.milliseconds)")
        #expect(abs(r.use.targetMilliseconds - 16 * 20) < 1e-9)
    }

    @Test("Without a drafter: plain rounds locally, run-ahead rounds behind a network")
    func withoutDrafter() {
        #expect(policy(remoteProfile(overhead: 20)).planWithoutDrafting(remaining: 50, room: 1000) == .runAhead(32))
        #expect(policy(remoteProfile(overhead: 20), limit: 1).planWithoutDrafting(remaining: 50, room: 1000) == .plain)
        #expect(policy(remoteProfile(overhead: 20)).planWithoutDrafting(remaining: 1, room: 1000) == .plain)
    }

    @Test("A run-ahead round is learned per token, apart from one plain pass")
    func learnsPerPass() {
        let p = policy(remoteProfile(overhead: 80))
        let before = p.profile.targetMilliseconds[1]
        var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 10 * before, roundMilliseconds: 10 * before + 80)
        result.decodedTokens = [Int32](repeating: 2, count: 9)
        let record = RoundRecord(plan: .runAhead(10), draft: Draft(), sent: TokenTree(), prediction: p.predictRunAhead(10), result: result,
                                 use: ResourceUse(targetMilliseconds: 10 * before), milliseconds: 10 * before + 80)
        p.observe(record)
        #expect(abs(p.profile.targetMilliseconds[1] - before) < 1e-9, "a pass is still \(before) ms, not \(p.profile.targetMilliseconds[1])")
        #expect(abs(p.profile.runAheadMillisecondsPerToken - before) < 1e-9)
        // A server that speculates inside its run-ahead rounds: 10 tokens for the time of 4
        // passes. The next run-ahead is predicted faster; one plain pass is still learned as it was.
        let aheadBefore = p.predictRunAhead(10).milliseconds
        var fast = result
        fast.cost.targetMilliseconds = 4 * before
        for _ in 0..<30 {
            p.observe(RoundRecord(plan: .runAhead(10), draft: Draft(), sent: TokenTree(), prediction: p.predictRunAhead(10), result: fast,
                                  use: ResourceUse(targetMilliseconds: 4 * before), milliseconds: 4 * before + 80))
        }
        #expect(abs(p.profile.runAheadMillisecondsPerToken - 0.4 * before) < 0.01 * before)
        #expect(abs(p.profile.targetMilliseconds[1] - before) < 1e-9)
        #expect(p.predictRunAhead(10).milliseconds < 0.75 * aheadBefore, "\(p.predictRunAhead(10).milliseconds) vs \(aheadBefore)")
        var stats = SpeculativeStats(drafter: "none")
        stats.record(record)
        #expect(stats.rounds == 10 && stats.plainRounds == 10 && stats.runAheadRounds == 1 && stats.runAheadTokens == 10)
        #expect(stats.plans.first?.tokens == 10 && stats.plans.first?.runAhead == 10)
    }

    /// Runs the policy against a simulated target for `tokens` tokens: run-ahead rounds commit
    /// what they ask, drafted rounds have each depth accepted with `acceptance` (deterministically:
    /// the first ⌊acceptance · depth⌋). Returns (tokens when drafting was first chosen without a
    /// probe, the tokens before each probe).
    func simulate(acceptance: Double, tokens: Int, catchUpMilliseconds: Double = 0) -> (firstChosen: Int?, probes: [Int]) {
        var profile = remoteProfile(overhead: 20)
        // Nothing known about this drafter yet.
        profile.depthAcceptance = []
        profile.depthObservations = []
        profile.catchUpMillisecondsPerToken = catchUpMilliseconds
        let p = policy(profile)
        var done = 0, probes: [Int] = [], lag = 0
        var first: Int?
        while done < tokens {
            let plan = p.plan(remaining: 10_000, room: 100_000, drafterLag: lag)
            var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 20, roundMilliseconds: 40)
            var sent = TokenTree()
            if plan.runAhead > 0 {
                result.decodedTokens = [Int32](repeating: 1, count: plan.runAhead - 1)
                result.cost.targetMilliseconds = 20 * Double(plan.runAhead)
                result.cost.roundTripMilliseconds = 20 + 20 * Double(plan.runAhead)
            } else if plan.budget.maxDepth > 0 {
                if plan.isProbe { probes.append(done) } else if first == nil { first = done }
                sent = TokenTree(chain: [Int32](repeating: 1, count: plan.budget.maxDepth), confidences: [Float](repeating: 0.9, count: plan.budget.maxDepth))
                result.acceptedNodes = Array(0..<Int(acceptance * Double(plan.budget.maxDepth)))
                result.batchSize = 1 + sent.count
                result.cost.targetMilliseconds = 20 + 2 * Double(sent.count)
                result.cost.roundTripMilliseconds = 40 + 2 * Double(sent.count)
            }
            let prediction = plan.runAhead > 0 ? p.predictRunAhead(plan.runAhead) : p.predict(nodes: sent.count, accepted: 0)
            // Round time 0: no speed correction (the simulation has no clock).
            p.observe(RoundRecord(plan: plan, draft: Draft(tree: sent, cost: DraftCost(milliseconds: 8 * Double(sent.count), steps: sent.count)),
                                  sent: sent, prediction: prediction, result: result, use: ResourceUse(), milliseconds: 0))
            let committed = result.acceptedNodes.count + result.passes
            done += committed
            lag = plan.isPlain ? lag + committed : 0
        }
        return (first, probes)
    }

    @Test("Nothing known, drafting is probed at once; a probe that may beat the chosen plan goes now, others wait until their loss is 1 % of the tokens decoded meanwhile, then twice as long")
    func exploration() {
        // Nothing known: every depth looks certain to a probe. Drafting that is always accepted
        // is chosen after a few probes, within the first 100 tokens.
        let good = simulate(acceptance: 1, tokens: 3000)
        #expect(good.firstChosen.map { $0 < 100 } == true && good.probes.first == 0, "\(good)")
        // Never accepted: a probe at once (nothing known), then probes that lose even at their
        // most hopeful (after 387, 1,158, 2,699 … tokens in this run): reading the last run-ahead round's
        // 32 tokens (2 ms each unmeasured, a quarter of a step), 3 draft steps of 8 ms, a round
        // trip; about 2.5 tokens for some 134 ms, where running ahead gives them for 50.
        let hopeless = simulate(acceptance: 0, tokens: 6000)
        let early = hopeless.probes.filter { $0 < 32 }, waited = hopeless.probes.filter { $0 >= 32 }
        #expect(hopeless.firstChosen == nil && (1...4).contains(early.count) && (2...5).contains(waited.count), "\(hopeless)")
        #expect(waited.first.map { (300...600).contains($0) } == true, "\(hopeless)")
        // Each wait at least twice the last (less a run-ahead round's overshoot).
        let gaps = zip(waited, [early.last ?? 0] + waited).map { $0 - $1 }
        #expect(zip(gaps.dropFirst(), gaps).allSatisfy { next, last in next >= 2 * (last - 31) }, "\(gaps)")
        // Dearer reading (10 ms a token): the first waited probe waits longer.
        let dear = simulate(acceptance: 0, tokens: 6000, catchUpMilliseconds: 10)
        #expect(dear.probes.first { $0 >= 32 }.map { $0 > 2 * waited.first! } == true, "\(dear) vs \(hopeless)")
    }

    @Test("Probes that cost little against the chosen plan still come after 16, 32, 64 … tokens")
    func cheapProbes() {
        // Local target, plain rounds, a drafter whose steps are nearly free and a target that
        // scores a few more tokens for nearly nothing: drafting is never accepted.
        var profile = CostProfile()
        for b in 1...40 { profile.targetMilliseconds[b] = 20 + 0.1 * Double(b - 1) }
        profile.draftStepMilliseconds = [0.05]
        profile.draftStepJoules = [0.0003]
        profile.depthAcceptance = [Double](repeating: 0.001, count: 8)
        let p = policy(profile)
        p.runAheadLimit = 0
        var done = 0, probes: [Int] = []
        while done < 200 {
            let plan = p.plan(remaining: 10_000, room: 100_000, drafterLag: 1)
            var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 20, roundMilliseconds: 20)
            var sent = TokenTree()
            if plan.budget.maxDepth > 0 {
                #expect(plan.isProbe)
                probes.append(done)
                sent = TokenTree(chain: [Int32](repeating: 1, count: plan.budget.maxDepth), confidences: [Float](repeating: 0.001, count: plan.budget.maxDepth))
                result.batchSize = 1 + sent.count
                result.cost.targetMilliseconds = 20 + 0.1 * Double(sent.count)
            }
            p.observe(RoundRecord(plan: plan, draft: Draft(tree: sent, cost: DraftCost(milliseconds: 0.05 * Double(sent.count), steps: sent.count)),
                                  sent: sent, prediction: p.predict(nodes: sent.count, accepted: 0), result: result, use: ResourceUse(), milliseconds: 0))
            done += result.passes
        }
        #expect(probes.count >= 3 && probes.first! <= 20, "\(probes)")
    }

    @Test("Under energy a probe pays for reading every token decoded without drafting: where that alone costs more than the share, probes wait the longest interval")
    func readingIsPriced() {
        // Plain rounds of 0.12 J against drafted rounds at acceptance 0.3 (known from 50 outcomes
        // per depth): drafting does not pay. Reading a token costs the drafter 0.012 J (a quarter
        // of a step, unmeasured), a tenth of a pass.
        func probes(_ profile: CostProfile) -> [Int] {
            let p = policy(profile, cs: 1, objective: .energyTotal, limit: 0)
            var done = 0, lag = 0, probes: [Int] = []
            while done < 3000 {
                let plan = p.plan(remaining: 10_000, room: 100_000, drafterLag: lag)
                var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 20, roundMilliseconds: 40)
                var sent = TokenTree()
                if plan.budget.maxDepth > 0 {
                    probes.append(done)
                    sent = TokenTree(chain: [Int32](repeating: 1, count: plan.budget.maxDepth), confidences: [Float](repeating: 0.3, count: plan.budget.maxDepth))
                    result.batchSize = 1 + sent.count
                    result.cost.targetMilliseconds = 20 + 2 * Double(sent.count)
                }
                p.observe(RoundRecord(plan: plan, draft: Draft(tree: sent, cost: DraftCost(milliseconds: 8 * Double(sent.count), steps: sent.count)),
                                      sent: sent, prediction: p.predict(nodes: sent.count, accepted: 0), result: result, use: ResourceUse(), milliseconds: 0))
                done += result.passes
                lag = sent.isEmpty ? lag + result.passes : 0
            }
            return probes
        }
        var profile = remoteProfile(overhead: 20, acceptance: 0.3)
        #expect(probes(profile).isEmpty, "\(probes(profile))")
        // Reading nearly free: probes come every so often.
        profile.catchUpJoulesPerToken = 1e-6
        #expect(probes(profile).count >= 2, "\(probes(profile))")
    }

    @Test("With proactive drafting on, a round that cannot have been drafted ahead is planned as drafting alone (energy at cs = 1 still drafts)")
    func firstRoundIsNotDraftedAhead() {
        var profile = remoteProfile(overhead: 20, acceptance: 0.99)
        // A step costs 0.09 J, a target pass 0.12 J: a chain of 8 nearly always accepted costs
        // about 0.11 J a token against 0.12 for running ahead; counted as if it also drafted the
        // next tree ahead (17 steps), it would cost 0.2.
        profile.draftStepJoules = [0.09]
        let p = policy(profile, cs: 1, objective: .energyTotal)
        p.overlapsDrafting = true
        #expect(p.plan(remaining: 48, room: 1000, drafterLag: 0).budget.maxDepth > 0)
    }

    @Test("Drafts judged not worth sending pull the planned acceptance down (text got harder), and do not reset exploration")
    func declinedDraftsAreEvidence() {
        let p = policy(remoteProfile(overhead: 20, acceptance: 0.95))
        #expect(p.plan(remaining: 1000, room: 10_000).budget.maxDepth > 2)  // Code-like acceptance: draft deep.
        var rounds = 0
        while p.plan(remaining: 1000, room: 10_000).budget.maxDepth > 0, rounds < 10 {
            // The drafter is unsure (confidence 0.2 per node); the tree is not sent.
            let tree = TokenTree(chain: [Int32](repeating: 1, count: 7), confidences: [Float](repeating: 0.2, count: 7))
            var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 20, roundMilliseconds: 40)
            result.decodedTokens = [Int32](repeating: 1, count: 31)
            result.cost.targetMilliseconds = 640
            p.observe(RoundRecord(plan: RoundPlan(budget: .chain(7)), draft: Draft(tree: tree, cost: DraftCost(milliseconds: 56, steps: 7)),
                                  sent: TokenTree(), prediction: p.predictRunAhead(32), result: result, use: ResourceUse(), milliseconds: 0))
            rounds += 1
        }
        #expect(rounds <= 3, "still planning drafts after \(rounds) declined ones: \(p.profile.depthAcceptance)")
    }

    @Test("At cs = 1 a declined draft is followed by a plain round, not a run-ahead; where running ahead is cheaper, it ends where the next probe is due")
    func hardStretch() {
        // A mature profile (50 outcomes per depth) at 80 ms; a run-ahead token costs a plain pass.
        var profile = remoteProfile(overhead: 80, acceptance: 0.7)
        profile.depthObservations = [Int](repeating: 50, count: 8)
        profile.runAheadMillisecondsPerToken = 20
        let p = policy(profile, cs: 1)
        let plan = p.plan(remaining: 1000, room: 10_000)
        #expect(plan.budget.maxDepth > 0)
        // A draft the drafter is nearly sure is wrong (confidence 0.01): not worth sending. A
        // run-ahead is a little cheaper than one plain round (fewer bytes per token), but it
        // would also stand in for the next tokens, which the plan expects to draft at about half
        // a pass each.
        let declined = p.select(Draft(tree: TokenTree(chain: [1, 1, 1], confidences: [0.01, 0.01, 0.01]),
                                      cost: DraftCost(milliseconds: 24, steps: 3)), plan: plan)
        #expect(declined.tree.isEmpty && declined.prediction.runAhead == 0, "\(declined.prediction)")

        // Drafting truly poor: running ahead is cheaper (bytes) and faster than plain rounds,
        // but a round asks only for the tokens until the next probe, not for all it may.
        var hard = profile
        hard.depthAcceptance = [Double](repeating: 0.02, count: 8)
        let q = policy(hard, cs: 1)
        let first = q.plan(remaining: 1000, room: 10_000)
        #expect((2..<32).contains(first.runAhead), "\(first)")
        var result = VerificationResult(acceptedNodes: [], nextToken: 1, batchSize: 1, targetMilliseconds: 20, roundMilliseconds: 100)
        result.decodedTokens = [Int32](repeating: 1, count: first.runAhead - 1)
        result.cost.targetMilliseconds = 20 * Double(first.runAhead)
        q.observe(RoundRecord(plan: first, draft: Draft(), sent: TokenTree(), prediction: q.predictRunAhead(first.runAhead), result: result,
                              use: ResourceUse(), milliseconds: 0))
        #expect(q.plan(remaining: 1000, room: 10_000, drafterLag: first.runAhead).isProbe)
    }

    @Test("Drafting after run-ahead rounds pays for reading what they committed")
    func catchUpIsPriced() {
        var profile = remoteProfile(overhead: 20, acceptance: 0.95)
        profile.catchUpMillisecondsPerToken = 2
        let p = policy(profile)
        #expect(p.plan(remaining: 1000, room: 10_000, drafterLag: 0).budget.maxDepth > 0)
        // Reading 400 tokens (800 ms) for the 40 tokens left: drafting does not pay for it.
        #expect(p.plan(remaining: 40, room: 10_000, drafterLag: 400).runAhead == 32)
        // Drafting is held back only by the reading's time: the drafter reads in this round's
        // shadow, and the next round drafts. Not where drafting does not pay anyway.
        #expect(p.catchUpIsDue(after: 1))
        let poor = policy(remoteProfile(overhead: 20, acceptance: 0.2))
        #expect(poor.plan(remaining: 40, room: 10_000, drafterLag: 400).runAhead > 0 && !poor.catchUpIsDue(after: 1))
        // With 1,000 tokens to go, the reading is a small share of the run it starts.
        #expect(p.plan(remaining: 1000, room: 10_000, drafterLag: 400).budget.maxDepth > 0)
        // Under energy the reading's joules buy drafting for the rest of the request: after a
        // run-ahead of 40 tokens (0.48 J to read, where a drafted token saves some 0.04 J) a
        // request with 100 tokens to go drafts again at once.
        let energy = policy(remoteProfile(overhead: 20, acceptance: 0.95), cs: 1, objective: .energyTotal)
        #expect(energy.plan(remaining: 100, room: 10_000, drafterLag: 40).budget.maxDepth > 0)
        #expect(energy.plan(remaining: 2, room: 10_000, drafterLag: 40).budget.maxDepth == 0)
        // Unmeasured, a token costs a quarter of a draft step.
        #expect(CostProfile().catchUp(tokens: 8, width: 1) == (0, 0))
        #expect(remoteProfile(overhead: 0).catchUp(tokens: 8, width: 1).milliseconds == 16)
    }

    @Test("A drafted round that starts a run of rounds drafted ahead pays its start (the reading, its own drafting) as its share of the run")
    func startIsShared() {
        // HumanEval-like at 80 ms on this machine's client: a draft step of 25 ms, reading a
        // token 7 ms, a run-ahead token 28 ms of server time (it speculates inside the round).
        // Drafted ahead, a chain nearly always accepted beats running ahead (about 38 against
        // 33 tokens/s); its first round, drafted on the clock after reading 32 tokens, does not
        // (about 13).
        var profile = remoteProfile(overhead: 80, acceptance: 0.95)
        profile.draftStepMilliseconds = [25]
        profile.catchUpMillisecondsPerToken = 7
        profile.runAheadMillisecondsPerToken = 28
        for lag in [0, 32] {
            let p = policy(profile)
            p.overlapsDrafting = true
            let plan = p.plan(remaining: 1000, room: 10_000, drafterLag: lag)
            #expect(plan.runAhead == 0 && plan.budget.maxDepth > 2 && !plan.isProbe, "lag \(lag): \(plan)")
        }
        // Near a request's end there is no run left to share the start: the target runs ahead.
        let p = policy(profile)
        p.overlapsDrafting = true
        #expect(p.plan(remaining: 12, room: 10_000, drafterLag: 32).runAhead > 0)
        // Without rounds drafted ahead the run does not beat running ahead either.
        #expect(policy(profile).plan(remaining: 1000, room: 10_000, drafterLag: 32).runAhead > 0)
    }

    @Test("Generation with run-ahead rounds, probes and catching up in the shadow equals plain greedy",
          arguments: TinyModel.Architecture.allCases)
    func lossless(arch: TinyModel.Architecture) throws {
        try withTargetAndDraft(arch, contextLength: 1024) { t, d in
            for text in ["the cat in the hat", "a"] {
                let prompt = t.promptTokens(text)
                let p = GenerationParameters(maxTokens: 300, stopAtEndOfText: false)
                let plain = try TextGenerator(model: t.model, tokenizer: t.tokenizer).generate(promptTokens: prompt, parameters: p)
                let drafter = try ModelDrafter(model: d.model, tokenizer: d.tokenizer, name: "other", targetTokenizer: t.tokenizer, targetName: "t")
                let verifier = RunAheadLocal(LocalVerifier(model: t.model))
                // Poor acceptance behind 80 ms: run-ahead rounds, with a probe of drafting now and then.
                // Probes may spend a fifth of the time (not 1 %), so that 300 tokens see several.
                var configuration = SpeculationConfiguration(budget: .chain(4), proactive: true, maxRunAhead: 8)
                configuration.explorationShare = 0.2
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: t.tokenizer,
                                             configuration: configuration, profile: remoteProfile(overhead: 80, acceptance: 0.2))
                let r = try g.generate(promptTokens: prompt, parameters: p)
                #expect(r.tokens == plain.tokens, "\(arch), \(text)")
                let spec = try #require(r.stats.speculative)
                #expect(spec.runAheadRounds > 0 && verifier.runAheads.allSatisfy { $0 >= 2 && $0 <= 8 }, "\(verifier.runAheads)")
                #expect(spec.draftedNodes > 0, "no probe in \(spec.rounds) rounds")
                // Rounds count target passes: with the accepted drafts they cover every token.
                #expect(spec.rounds + spec.acceptedNodes >= r.tokens.count && spec.rounds <= r.tokens.count)
            }
        }
    }
}
