/// Plans each speculative round from the learned `CostProfile` to meet the user's objective.
///
/// **The model of a round.** Drafting a tree of depth d at width w costs `d · step(w)` of time
/// and energy on the device (zero for free drafters). Sending n nodes costs the round overhead
/// plus `n ·` uplink time per node (a line fitted to round trip − server time against nodes) and
/// the target's time to score `1 + n` tokens (measured per batch size, interpolated). Node i is
/// accepted with probability P(i), the product of its and its ancestors' calibrated confidences;
/// a round commits `1 + Σ P(i)` tokens in expectation. Its resources — target seconds and
/// joules, draft joules, bytes up and down (lines fitted to nodes sent and accepted) — priced by
/// the objective give its cost. Predicted times are scaled by the running ratio of measured to
/// predicted round time.
///
/// A *run-ahead* round (a remote target that offers it) drafts nothing and has the target decode
/// k tokens by itself in one exchange: one round overhead, k tokens at the server's time per
/// run-ahead token (learned from run-ahead rounds: a plain pass each, or less when the server
/// speculates inside the round). Where drafting here does not pay and every exchange costs a
/// round trip, it is the fast and cheap plan.
///
/// **The choice.** Among the candidate plans (no drafting, every tree size the draft allows, and
/// run-ahead rounds of 2, 4, 8 … tokens up to the limit; a model drafter's run-ahead round is
/// then cut to end where the next probe of drafting is due),
/// the policy picks, with references taken from the plain round under the same profile:
/// - by default the one minimising `cs · (cost per token ÷ plain's) + (1 − cs) · (plain's
///   tokens/s ÷ tokens/s)` — cs = 0 is the fastest plan, cs = 1 the cheapest per token;
/// - with a minimum tokens/s, a plan for the rest of the request: this round's candidate for
///   some of its tokens and the steady plan (the cheapest keeping the minimum by itself) for
///   the others, the candidate that keeps the minimum over the whole request for the least cost
///   beyond the steady plan's (`planRest`; a lead is spent on as many cheaper rounds as it
///   pays for, a shortfall made up by as few faster ones as it needs); else the fastest;
/// - with a maximum cost per million tokens, the fastest plan within it (else the cheapest).
/// A minimum is a promise about each request (tokens and time add up); a maximum is kept by
/// every round.
///
/// It decides twice: before drafting (model drafters only: the depth, from acceptance by depth
/// so far — depth 0 is a plain round) and after (the N most probable nodes, a set closed under
/// parents since P never grows along a path). The policy and its profile outlive a request.
///
/// **Exploring.** While drafting is not chosen, a probe (a small draft sent whatever the
/// estimate) now and then lets a pessimistic estimate correct itself: after 16 tokens at first,
/// the wait doubling after each probe that does worse than predicted, and never before the
/// probe's predicted loss against the chosen plan is within `explorationShare` (1 %) of the
/// score of the tokens decoded meanwhile. A probe is priced and sized by an optimistic
/// acceptance (the less is known, the more hopeful), and goes at once where it may beat the
/// chosen plan; under energy it also pays for reading every token decoded without drafting.
public final class RoundPolicy {
    /// The largest tree, adaptive sizing on or off, and the user's preferences.
    public var configuration: SpeculationConfiguration
    /// Whether drafting costs time per depth step (a model drafter).
    public let drafterCostsTime: Bool
    /// What has been learned; persisted by the caller between processes.
    public private(set) var profile: CostProfile
    /// Models the target's energy when the verifier does not report it (J per ms of compute).
    public var fallbackTargetJoulesPerMillisecond: Double
    /// Set for a request whose rounds may be drafted ahead (proactive drafting with a pipelined
    /// verifier): planned drafting then costs wall time only in the rounds not drafted ahead.
    public var overlapsDrafting = false
    /// Set for a request whose drafter honours `DraftBudget.deepening` (set by the generator).
    public var drafterDeepens = false
    /// Most tokens a run-ahead round may ask for in the current request (the verifier's offer
    /// within `configuration.maxRunAhead`; set by the generator); below 2: no run-ahead.
    public var runAheadLimit = 0
    /// The run-ahead sizes the last `plan` allowed (what may still be emitted and held).
    private var runAheadCap = 0
    /// The score per token of the drafted round the last `plan` chose (not a probe): what a
    /// run-ahead in place of its draft must beat (`select`).
    private var plannedDraftScore: Double?
    /// Under a minimum speed, the steady plan the last `plan` found (the cheapest candidate
    /// keeping the minimum by itself): what `select` plans the rest of the request with, whatever
    /// the drafted tree turned out to be.
    private var steadyPlan: RoundPrediction?
    /// Whether the last `plan` held drafting back only for the time a model drafter would spend
    /// reading the tokens it lags behind: it reads them in this round's shadow instead
    /// (`catchUpIsDue`), and the next round drafts.
    private var resumesDrafting = false

    /// Tokens committed since the last round that sent a draft, and how many to wait before
    /// re-probing when drafting looks unprofitable. Counted in tokens, not rounds, so that a
    /// run-ahead round of 32 tokens does not put off exploring 32 times longer than plain rounds
    /// would. The wait is at least what keeps a probe's predicted loss within
    /// `configuration.explorationShare` of the tokens decoded meanwhile (`probeWait`: a probe
    /// of a model drafter after run-ahead rounds pays for reading the last round's tokens,
    /// several draft steps and a round trip for a token or two), and it doubles after each
    /// probe that does worse than predicted.
    private var tokensWithoutDraft = 0
    private var probeInterval = 16
    private var probeWait = 0
    static let maxProbeInterval = 4096
    /// Tokens without a drafted round after which the next plan probes.
    private var probeThreshold: Int { max(probeInterval, probeWait) }
    /// Whether the last `select` sent a node only to probe (for `observe`).
    private var selectionIsProbe = false
    /// The current request's committed tokens and round time so far, and the tokens it may
    /// still emit: a minimum speed is a promise about the request (see `speedAccount`).
    private var requestTokens = 0.0
    private var requestMilliseconds = 0.0
    private var requestRemaining = 0
    /// Decayed sums of the chosen plans' predicted and measured tokens and time, across
    /// requests: how optimistic the predictions have been lately (see `deliveredRatio`).
    private var predictedTokens = 0.0, predictedMilliseconds = 0.0
    private var measuredTokens = 0.0, measuredMilliseconds = 0.0

    static let smoothing = 0.2

    public init(configuration: SpeculationConfiguration, drafterCostsTime: Bool, profile: CostProfile = CostProfile()) {
        self.configuration = configuration
        self.drafterCostsTime = drafterCostsTime
        self.profile = profile
        fallbackTargetJoulesPerMillisecond = EnergyMeter.defaultWattsPerCore / 1000
    }

    var preferences: CostPreferences { configuration.preferences }

    // MARK: Predictions

    /// The prediction for sending `nodes` nodes expected to yield `accepted` accepted tokens,
    /// after drafting that cost `draftMilliseconds` and `draftJoules`.
    public func predict(nodes: Int, accepted: Double, draftMilliseconds: Double = 0, draftJoules: Double = 0) -> RoundPrediction {
        let target = profile.targetMilliseconds(batch: 1 + nodes) + profile.samplingMilliseconds
        let network = profile.network.predict(Double(nodes))
        let jPerMs = profile.targetJoulesPerMillisecond > 0 ? profile.targetJoulesPerMillisecond : fallbackTargetJoulesPerMillisecond
        let use = ResourceUse(
            targetMilliseconds: target, targetJoules: target * jPerMs, draftJoules: draftJoules,
            bytesUp: profile.bytesUp.predict(Double(nodes)), bytesDown: profile.bytesDown.predict(accepted))
        let ms = (draftMilliseconds + network + target) * profile.speedCorrection
        return RoundPrediction(nodes: nodes, tokens: 1 + accepted, milliseconds: ms, use: use,
                               cost: preferences.objective.cost(of: use, rates: preferences.rates))
    }

    /// The prediction for a run-ahead round of `count` tokens (after drafting that cost
    /// `draftMilliseconds` and `draftJoules`, when one was drafted and then not sent).
    public func predictRunAhead(_ count: Int, draftMilliseconds: Double = 0, draftJoules: Double = 0) -> RoundPrediction {
        let perToken = profile.runAheadMillisecondsPerToken > 0 ? profile.runAheadMillisecondsPerToken
            : profile.targetMilliseconds(batch: 1) + profile.samplingMilliseconds
        let target = Double(count) * perToken
        let network = profile.network.predict(0)
        let jPerMs = profile.targetJoulesPerMillisecond > 0 ? profile.targetJoulesPerMillisecond : fallbackTargetJoulesPerMillisecond
        let use = ResourceUse(
            targetMilliseconds: target, targetJoules: target * jPerMs, draftJoules: draftJoules,
            bytesUp: profile.bytesUp.predict(0), bytesDown: profile.bytesDown.predict(Double(count - 1)))
        return RoundPrediction(nodes: 0, tokens: Double(count), milliseconds: (draftMilliseconds + network + target) * profile.speedCorrection,
                               use: use, cost: preferences.objective.cost(of: use, rates: preferences.rates), runAhead: count)
    }

    /// Run-ahead candidates: 2, 4, 8 … tokens and the cap itself (none when the cap is below 2).
    func runAheadPredictions(cap: Int, draftMilliseconds: Double = 0, draftJoules: Double = 0) -> [RoundPrediction] {
        guard configuration.adaptive, cap >= 2 else { return [] }
        var sizes: [Int] = []
        var k = 2
        while k < cap { sizes.append(k); k *= 2 }
        sizes.append(cap)
        return sizes.map { predictRunAhead($0, draftMilliseconds: draftMilliseconds, draftJoules: draftJoules) }
    }

    /// The plain round (one target token, nothing drafted): the reference of the cs score.
    public var plainPrediction: RoundPrediction { predict(nodes: 0, accepted: 0) }

    /// Starts a request: the service-level feedback begins afresh (the profile does not).
    public func beginRequest() {
        requestTokens = 0
        requestMilliseconds = 0
    }

    /// The share by which a minimum speed is aimed above: the request's account spends a lead
    /// down to it, and the rounds' spread around their predictions must not then take the
    /// request below the minimum.
    static let serviceLevelMargin = 0.05

    /// The request's account under a minimum of `x` tokens/s (aimed `serviceLevelMargin`
    /// above): its tokens still to go, the time they may take, and the rate that asks of them
    /// (`need`: above `x` after a shortfall, below it after a lead, infinite when the time is
    /// spent; `choose` divides it by `deliveredRatio`, so that a plan is chosen by what it will
    /// likely deliver). Speed is decode speed, as every report gives it: the tokens after the
    /// first over the decode time (48 tokens in 2 s run at 23.5 tokens/s), so the time is what
    /// the tokens after the first may take at the aim (an account counting all 48 landed 0.1 %
    /// under a minimum it aimed 5 % above, MT-bench at 80 ms).
    func speedAccount(_ x: Double) -> (remaining: Double, budgetMilliseconds: Double, need: Double) {
        let remaining = Double(max(requestRemaining, 1)), total = requestTokens + remaining
        let aim = x * (1 + Self.serviceLevelMargin) * (total > 1 ? total / (total - 1) : 1)
        let budget = total / aim * 1000 - requestMilliseconds
        return (remaining, budget, budget > 0 ? remaining / budget * 1000 : .infinity)
    }

    /// Recent rounds' measured speed ÷ their predicted speed, within 0.5…1: only ever a
    /// discount, since the cheapest plan predicted to keep a minimum sits just above it and any
    /// optimism would make the request miss.
    var deliveredRatio: Double {
        guard predictedTokens > 0, predictedMilliseconds > 0, measuredTokens > 0, measuredMilliseconds > 0 else { return 1 }
        return min(max((measuredTokens / measuredMilliseconds) / (predictedTokens / predictedMilliseconds), 0.5), 1)
    }

    /// Under a minimum speed, the candidate that keeps it over the whole request for the least
    /// cost beyond the steady plan's (`steady`: the cheapest plan keeping the minimum by
    /// itself), planning the rest of the request as that candidate for some of its tokens and
    /// the steady plan for the others: a candidate cheaper per token than the steady plan (and
    /// so slower) for as many whole rounds as the time allows, a dearer one (faster) for as few
    /// as the minimum needs, any for all the rest if it keeps the minimum throughout; nil when
    /// none keeps it.
    ///
    /// Why a plan for the rest rather than the cheapest round fast enough by itself:
    /// - a lead: with every round held to the minimum, a draft too unlikely to keep it was
    ///   replaced by a run-ahead of 16 tokens, though the request ran far ahead (MT-bench at
    ///   80 ms, a minimum of 9.8 tokens/s: 18.5 tokens/s at $9.39 per million, where drafting
    ///   alone ran at 13 for $5.60);
    /// - a shortfall: a model drafter's first round reads the prompt on the clock, and the rest
    ///   of the request then asks a little more than drafting's speed. Every run-ahead size kept
    ///   that pace and the largest is the cheapest per token (one round's bytes over more
    ///   tokens): with a minimum of 10 tokens/s, rounds of 32 run-ahead tokens took 548–659 of
    ///   887 tokens at 1.5× the fixed chain's cost. The shortest run-ahead keeping the pace was
    ///   worse (13.1 tokens/s at $9.74, against 22.3 at $9.35): rounds of 2–8 tokens, each
    ///   paying a round trip, never gave back what drafting needed. Here a run-ahead is as long
    ///   as the steady plan needs after it.
    ///
    /// Why as many rounds as the time allows, not one: planned as one round and then the
    /// steady plan, a lead went to whichever cheap round displaced the most steady tokens at
    /// once (a deeper draft, though dearer per token than a shallower one the lead could pay
    /// for many times over), and the next round, planned the same way, could choose it again.
    /// The rest's cost is linear in the candidate's share of it, so the best share is one of
    /// the two ends.
    func planRest(_ candidates: [RoundPrediction], steady: RoundPrediction,
                  account: (remaining: Double, budgetMilliseconds: Double, need: Double), delivered: Double) -> Int? {
        let budget = account.budgetMilliseconds
        guard budget > 0, steady.tokensPerSecond > 0 else { return nil }
        let rest = account.remaining
        // Time per token as it will likely be delivered; `slack`: what the steady plan for all
        // the rest leaves of the budget (below 0: a shortfall).
        let steadyMs = 1000 / (steady.tokensPerSecond * delivered)
        let slack = budget - rest * steadyMs
        var best: (index: Int, extra: Double)?
        for (i, c) in candidates.enumerated() where c.tokens > 0 && c.milliseconds > 0 {
            let ms = c.milliseconds / c.tokens / delivered
            // The candidate's tokens t, in whole rounds (one at least, or all the rest), must
            // keep t·ms + (rest − t)·steadyMs within the budget.
            let round = min(c.tokens, rest)
            var low = round, high = rest
            if ms > steadyMs {
                let most = slack / (ms - steadyMs)
                if most < rest { high = (most / c.tokens).rounded(.down) * c.tokens }
            } else if ms < steadyMs {
                let least = -slack / (steadyMs - ms)
                if least > rest { continue }
                low = min(rest, max(round, (least / c.tokens).rounded(.up) * c.tokens))
            } else if slack < 0 {
                continue
            }
            guard low <= high else { continue }
            let extraPerToken = c.costPerToken - steady.costPerToken
            let e = (extraPerToken < 0 ? high : low) * extraPerToken
            if let b = best, e > b.extra || (e == b.extra && c.tokensPerSecond <= candidates[b.index].tokensPerSecond) { continue }
            best = (i, e)
        }
        return best?.index
    }

    /// Index of the candidate the preferences pick.
    public func choose(_ candidates: [RoundPrediction]) -> Int { choose(candidates, steady: nil) }

    /// `steady`: under a minimum speed, the steady plan to plan the rest of the request with
    /// (nil: the cheapest of `candidates` keeping the minimum, remembered for `select`).
    func choose(_ candidates: [RoundPrediction], steady given: RoundPrediction?) -> Int {
        precondition(!candidates.isEmpty)
        let indices = Array(candidates.indices)
        func fastest(_ among: [Int]) -> Int {
            among.max { a, b in
                let ta = candidates[a].tokensPerSecond, tb = candidates[b].tokensPerSecond
                return ta != tb ? ta < tb : a > b
            }!
        }
        func cheapest(_ among: [Int]) -> Int {
            among.min { a, b in
                let ca = candidates[a].costPerToken, cb = candidates[b].costPerToken
                if ca != cb { return ca < cb }
                let ta = candidates[a].tokensPerSecond, tb = candidates[b].tokensPerSecond
                return ta != tb ? ta > tb : a < b
            }!
        }
        switch preferences.serviceLevel {
        case let .minTokensPerSecond(x)?:
            let account = speedAccount(x), delivered = deliveredRatio
            var steady = given
            if given == nil {
                let keepsMinimum = indices.filter { candidates[$0].tokensPerSecond * delivered >= x * (1 + Self.serviceLevelMargin) }
                steady = keepsMinimum.isEmpty ? nil : candidates[cheapest(keepsMinimum)]
                steadyPlan = steady
            }
            if let steady, let i = planRest(candidates, steady: steady, account: account, delivered: delivered) { return i }
            // No steady plan: the cheapest plan keeping the rate the rest needs, else the fastest.
            let ok = indices.filter { candidates[$0].tokensPerSecond >= account.need / delivered }
            return ok.isEmpty ? fastest(indices) : cheapest(ok)
        case let .maxCostPerMillionTokens(y)?:
            let ok = indices.filter { candidates[$0].costPerToken * 1e6 <= y }
            return ok.isEmpty ? cheapest(indices) : fastest(ok)
        case nil:
            let score = scorer()
            var best = 0, bestScore = Double.infinity
            for (i, c) in candidates.enumerated() {
                let s = score(c)
                // Equal scores go to the faster plan: at cs = 1 under an energy objective every
                // run-ahead size costs the same per token, and the longest is the fastest.
                let tie = abs(s - bestScore) <= 1e-9 * max(abs(s), 1e-300)
                if tie ? c.tokensPerSecond > candidates[best].tokensPerSecond : s < bestScore { best = i; bestScore = s }
            }
            return best
        }
    }

    /// A plan's score per token, lower is better: `cs · (cost per token ÷ plain's) + (1 − cs) ·
    /// (plain's tokens/s ÷ tokens/s)`; under a service level, the time per token relative to
    /// plain's (what a detour from the chosen plan costs the promise).
    func scorer() -> (RoundPrediction) -> Double {
        let reference = plainPrediction
        let cs = preferences.serviceLevel != nil || preferences.objective == .tps ? 0 : preferences.cs.value
        var refCost = reference.costPerToken
        let refRate = reference.tokensPerSecond
        if refCost <= 0 {
            // Plain spends none of this objective (draft energy): costs are weighed against a
            // chain of one drafted node's, so that the cheapest plan still wins at cs = 1.
            let step = profile.draftStep(width: 1)
            refCost = predict(nodes: 1, accepted: profile.depthAcceptance(1), draftMilliseconds: step.milliseconds,
                              draftJoules: step.joules).costPerToken
        }
        return { c in
            let costTerm = refCost > 0 ? c.costPerToken / refCost : 0
            let speedTerm = c.tokensPerSecond > 0 ? refRate / c.tokensPerSecond : .infinity
            return cs * costTerm + (1 - cs) * speedTerm
        }
    }

    /// Tokens to decode by `best` before a probe predicted as `probe` costs no more than
    /// `configuration.explorationShare` of them: what the probe loses against `best` over its
    /// tokens, divided by the share each token of `best` may spend.
    /// `readingPerToken`: what each token waited adds to the probe, in the same units — a model
    /// drafter reads every token committed without it before it drafts. Read in the shadow of a
    /// round that costs no time, but the energy is spent however long the wait: where it alone
    /// exceeds the share, no wait is long enough, and the probe waits the longest interval (a
    /// request's end resets what the drafter lags behind).
    func explorationWait(probe: RoundPrediction, best: RoundPrediction, score: (RoundPrediction) -> Double, readingPerToken: Double = 0) -> Int {
        let perToken = score(best), loss = probe.tokens * (score(probe) - perToken)
        guard loss > 0, perToken > 0, perToken.isFinite else { return 0 }
        let allowance = max(configuration.explorationShare, 1e-6) * perToken - max(readingPerToken, 0)
        guard allowance > 0 else { return Self.maxProbeInterval }
        return Int(min(loss / allowance, Double(Self.maxProbeInterval)).rounded(.up))
    }

    /// Predictions for the plain round and chains of every depth the budget allows (from
    /// acceptance by depth so far): the range of what the profile thinks is achievable.
    public func chainPredictions() -> [RoundPrediction] {
        let b = configuration.budget
        let step = profile.draftStep(width: 1)
        var out = [plainPrediction]
        var expected = 0.0, reach = 1.0
        for d in stride(from: 1, through: b.maxDepth, by: 1) {
            reach *= profile.depthAcceptance(d)
            expected += reach
            out.append(predict(nodes: d, accepted: expected, draftMilliseconds: drafterCostsTime ? Double(d) * step.milliseconds : 0,
                               draftJoules: Double(d) * step.joules))
        }
        return out
    }

    /// The fastest rate the profile predicts (for service-level messages).
    public var bestPredictedTokensPerSecond: Double { chainPredictions().map(\.tokensPerSecond).max() ?? 0 }
    /// The lowest cost per million tokens the profile predicts.
    public var lowestPredictedCostPerMillionTokens: Double { (chainPredictions().map(\.costPerToken).min() ?? 0) * 1e6 }

    // MARK: Planning

    /// The plan before drafting. `remaining`: tokens that may still be emitted; `room`: tokens
    /// the target's context can still take beyond the pending one; `maxTreeNodes`: the
    /// verifier's limit on one tree; `drafterLag`: committed tokens a model drafter has not read
    /// yet (after rounds that drafted nothing), which drafting now would first have to read.
    public func plan(remaining: Int, room: Int, maxTreeNodes: Int = .max, drafterLag: Int = 0) -> RoundPlan {
        var b = configuration.budget
        // A round always emits the target's own token, so at most remaining - 1 drafted tokens count.
        let cap = max(0, min(remaining - 1, room, maxTreeNodes))
        b.maxDepth = min(b.maxDepth, cap)
        b.maxNodes = min(b.maxNodes, cap)
        let depthLimit = b.maxDepth, nodeLimit = b.maxNodes
        requestRemaining = remaining
        plannedDraftScore = nil
        steadyPlan = nil
        resumesDrafting = false
        let ahead = runAheadCandidates(remaining: remaining, room: room)
        if b.maxDepth == 0 || b.maxNodes == 0 { return Self.bestWithoutDrafting(choose([plainPrediction] + ahead), ahead) }
        guard configuration.adaptive, drafterCostsTime else { return RoundPlan(budget: b) }
        // A model drafter: choose the depth (0 = plain) from acceptance by depth so far.
        let step = profile.draftStep(width: b.maxWidth)
        // Drafting after undrafted rounds starts by reading what they committed: on the clock,
        // but shared over the run it starts (below).
        let catchUp = profile.catchUp(tokens: drafterLag, width: b.maxWidth)
        // A drafted round of depth d expected to commit `1 + expected` tokens, the whole chain
        // with probability `reach`, after the drafter read what it lags behind.
        //
        // Such a round after rounds that drafted nothing (or a request's first) starts a run of
        // drafted rounds, and what only the start pays — reading the lag, and drafting that
        // nobody drafted ahead — buys drafting for the rest of the request (read once, the
        // drafter keeps up while it drafts): the round bears its share, by tokens, of time and
        // energy alike. Priced whole in one round, starting never paid where a run does:
        // - the lag's energy: after a run-ahead of 20 tokens it outweighed what a drafted round
        //   saves, and at cs = 1 under energy a run of plain rounds followed until the next
        //   probe (HumanEval at 20 ms: 129 plain rounds where drafting was accepted 98 %);
        // - the lag's time and the first round's exposed drafting: at cs = 0 a drafted round
        //   after run-ahead rounds, read and drafted on the clock, lost to running ahead, while
        //   rounds drafted ahead beat it (HumanEval at 80 ms: cs = 0 ran ahead at 29.9 tok/s,
        //   cs = 0.25 drafted at 35.4).
        // Each start is paid when it happens, so switching back and forth is not free: the share
        // is what makes a short request's last tokens not worth starting for. `single`: a round
        // that starts nothing (a probe expected to lose, priced for how long to wait for it) has
        // the reading's time and all its drafting on its own clock.
        let score = scorer()
        let startsRun = drafterLag > 0 || requestTokens == 0
        func draftedRound(_ d: Int, expected: Double, reach: Double, lag: (milliseconds: Double, joules: Double),
                          single: Bool = false) -> RoundPrediction {
            let nodes = min(b.maxNodes, d * b.maxWidth)
            // This round's share of the request, and of the start's time (all of it for `single`).
            // The reading's energy is shared either way (a waited probe pays for its waiting's
            // reading in `explorationWait`).
            let share = min(1, (1 + expected) / Double(max(remaining, 1)))
            let startShare = single ? 1 : share
            let lag = (milliseconds: lag.milliseconds * startShare, joules: lag.joules * share)
            let alone = predict(nodes: nodes, accepted: expected, draftMilliseconds: lag.milliseconds + Double(d) * step.milliseconds,
                                draftJoules: lag.joules + Double(d) * step.joules)
            guard overlapsDrafting else { return alone }
            // Or in a run of rounds that draft ahead. Time a drafted round waits for its drafting:
            // none when it was drafted ahead. Until trees drafted ahead have been seen, their hit
            // rate is modelled: the whole chain accepted and the target's next token the
            // drafter's first choice. Nothing was drafted ahead for the round that starts a run
            // (a request's first, or one after a round that drafted nothing): it waits for all
            // of its drafting, shared as above. Drafting ahead is billed in the round that does
            // it, used or wasted: such a round pays for its own drafting when the last one
            // missed, and for the next tree's (one level deeper) either way. Whichever scores
            // better is the plan's prediction (`shouldDraftAhead` weighs the same trade each
            // round).
            let hit = profile.aheadObservations > 0 ? profile.aheadHitRate : reach * profile.depthAcceptance(d + 1)
            let exposed = startsRun ? startShare + (1 - startShare) * (1 - hit) : 1 - hit
            let overlapped = predict(nodes: nodes, accepted: expected,
                                     draftMilliseconds: lag.milliseconds + Double(d) * step.milliseconds * exposed,
                                     draftJoules: lag.joules + (Double(d) * exposed + Double(d + 1)) * step.joules)
            return score(overlapped) < score(alone) ? overlapped : alone
        }
        var candidates = [plainPrediction]
        var expected = 0.0, reach = 1.0
        var atDepth: [(expected: Double, reach: Double)] = []
        for d in 1...b.maxDepth {
            reach *= profile.depthAcceptance(d)
            expected += reach
            atDepth.append((expected, reach))
            candidates.append(draftedRound(d, expected: expected, reach: reach, lag: catchUp))
        }
        let drafted = candidates.count
        var best = choose(candidates + ahead)
        var probe = false
        // Re-probe now and then so a pessimistic estimate can correct itself (bounded cost).
        if best == 0 || best >= drafted {
            let chosen = best == 0 ? plainPrediction : ahead[best - drafted], chosenScore = score(chosen)
            // Held back only by the time reading the lag would take: read it while this round's
            // target works (`catchUpIsDue`), so that the next round drafts.
            if drafterLag > 0 {
                let inShadow = (milliseconds: 0.0, joules: catchUp.joules)
                resumesDrafting = atDepth.indices.contains { i in
                    score(draftedRound(i + 1, expected: atDepth[i].expected, reach: atDepth[i].reach, lag: inShadow)) < chosenScore
                }
            }
            // A probe is sized and priced by what it may show: each depth's acceptance made
            // hopeful by how little is known (`optimisticDepthAcceptance`: certain for a drafter
            // never tried here), the depth that estimate would draft, at least 3 (a depth-1 probe
            // could never show that deeper drafts pay).
            // Sized and priced by the mean estimate, a profile that had never drafted at this
            // delay (its warm-up only ran ahead) kept drafting away for 620 of 960 HumanEval
            // tokens at cs = 0, accepted 98 % once tried. It costs what the chosen plan's round
            // leaves: the drafter reads the earlier rounds' tokens in that round's shadow
            // (`catchUpIsDue`), not that round's own.
            let lag = profile.catchUp(tokens: min(drafterLag, max(1, chosen.runAhead)), width: b.maxWidth)
            var hope = (expected: 0.0, reach: 1.0)
            var hopes: [(expected: Double, reach: Double)] = []
            var probes: [RoundPrediction] = []
            for d in 1...b.maxDepth {
                hope.reach *= profile.optimisticDepthAcceptance(d)
                hope.expected += hope.reach
                hopes.append(hope)
                probes.append(draftedRound(d, expected: hope.expected, reach: hope.reach, lag: lag, single: true))
            }
            let likeliest = probes.indices.min { score(probes[$0]) < score(probes[$1]) } ?? 0
            let probeDepth = max(likeliest + 1, min(3, b.maxDepth))
            let reading = predict(nodes: 0, accepted: 0, draftJoules: profile.catchUp(tokens: 1, width: b.maxWidth).joules)
            probeWait = explorationWait(probe: probes[probeDepth - 1], best: chosen, score: score,
                                        readingPerToken: score(reading) - score(plainPrediction))
            // A probe that may well beat the chosen plan goes now (reading all the drafter lags
            // behind, priced as the start of a run like any planned drafted round): the wait is
            // for probes that lose even if drafting does as well as it may.
            let hopeNow = hopes[probeDepth - 1]
            if tokensWithoutDraft >= probeThreshold
                || score(draftedRound(probeDepth, expected: hopeNow.expected, reach: hopeNow.reach, lag: catchUp)) < chosenScore {
                tokensWithoutDraft = 0
                probeInterval = min(probeThreshold * 2, Self.maxProbeInterval)
                best = probeDepth
                probe = true
            }
        }
        // (The wait goes back to 16 when a drafted tree is sent by choice: see `observe`. A plan
        // to draft whose tree is then not worth sending does not count.)
        if best == 0 { return .plain }
        // A run-ahead, planned here or chosen by `select` for a draft not worth sending, ends where
        // the next probe of drafting is due (at least 2 tokens). Running ahead is chosen on this
        // moment's estimate of drafting; one exchange for the rest of a request would let a short
        // hard stretch decide all of it (measured at cs = 1 on MT-bench at 80 ms: 11 run-ahead
        // rounds took 223 of 887 tokens, at twice a drafted token's cost). Where drafting is far
        // behind, the probe wait is long and this does not bind.
        runAheadCap = min(runAheadCap, max(2, probeThreshold - tokensWithoutDraft))
        if best >= drafted { return .runAhead(min(ahead[best - drafted].runAhead, runAheadCap)) }
        if !probe { plannedDraftScore = score(candidates[best]) }
        // Past the planned depth, while the draft's path stays likely enough (not for a probe:
        // its size is fixed so that it measures what it was sent to).
        var deepening: DraftDeepening?
        if !probe, configuration.deepening, drafterDeepens, depthLimit > best {
            let base = candidates[best], baseScore = score(base)
            let (expected, reach) = atDepth[best - 1]
            // k more levels under a node of path probability q: their nodes' path probabilities
            // are q·a₁, q·a₁a₂ … (aᵢ the acceptance of depth best + i so far), and each costs a
            // draft step. The bar is the least q at which some k scores better than stopping.
            var bar = Double.infinity
            for k in 1...(depthLimit - best) where min(nodeLimit, (best + k) * b.maxWidth) > base.nodes {
                var gain = 0.0, chain = 1.0
                for i in 1...k { chain *= profile.depthAcceptance(best + i); gain += chain }
                func pays(_ q: Double) -> Bool {
                    score(draftedRound(best + k, expected: expected + q * gain, reach: reach * q * chain, lag: catchUp)) < baseScore
                }
                guard pays(min(bar, 1)) else { continue }
                var lo = 0.0, hi = min(bar, 1)
                for _ in 0..<24 {
                    let mid = (lo + hi) / 2
                    if pays(mid) { hi = mid } else { lo = mid }
                }
                bar = hi
            }
            if bar <= 1 { deepening = DraftDeepening(plannedDepth: best, minPathProbability: bar, calibration: profile.calibrationTable) }
        }
        b.deepening = deepening
        b.maxDepth = deepening == nil ? best : depthLimit
        b.maxNodes = min(nodeLimit, b.maxDepth * b.maxWidth)
        return RoundPlan(budget: b, isProbe: probe)
    }

    /// The plan for a request without a drafter: plain rounds, or run-ahead rounds where the
    /// verifier offers them and they pay.
    public func planWithoutDrafting(remaining: Int, room: Int) -> RoundPlan {
        requestRemaining = remaining
        resumesDrafting = false
        let ahead = runAheadCandidates(remaining: remaining, room: room)
        return Self.bestWithoutDrafting(choose([plainPrediction] + ahead), ahead)
    }

    /// The run-ahead candidates of a round that may emit `remaining` tokens with `room` left in
    /// the context (a run-ahead of k emits k tokens; its last pass needs room for the token
    /// before the last); `select` reuses the cap.
    private func runAheadCandidates(remaining: Int, room: Int) -> [RoundPrediction] {
        runAheadCap = max(0, min(runAheadLimit, remaining, room + 1))
        return runAheadPredictions(cap: runAheadCap)
    }

    /// Whether a model drafter should read the committed tokens while the target works on this
    /// round, which sends no draft and commits `tokens`: the next round will probe drafting, or
    /// the last plan held drafting back only for the time the reading takes. Either way the
    /// reading is then off the clock.
    public func catchUpIsDue(after tokens: Int) -> Bool {
        drafterCostsTime && configuration.adaptive && (resumesDrafting || tokensWithoutDraft + tokens >= probeThreshold)
    }

    /// Candidate `best` of `[plain] + ahead` as a plan.
    private static func bestWithoutDrafting(_ best: Int, _ ahead: [RoundPrediction]) -> RoundPlan {
        best == 0 ? .plain : .runAhead(ahead[best - 1].runAhead)
    }

    /// Path probabilities of `tree`'s nodes under the calibrated confidences.
    public func pathProbabilities(_ tree: TokenTree) -> [Double] {
        var pathP = [Double](repeating: 0, count: tree.count)
        for i in 0..<tree.count {
            let parent = tree.parents[i]
            pathP[i] = (parent < 0 ? 1 : pathP[parent]) * profile.calibrated(tree.confidences[i])
        }
        return pathP
    }

    /// The part of `draft` worth sending (the whole tree when not adaptive), and its prediction.
    public func select(_ draft: Draft, plan: RoundPlan) -> Selection {
        if plan.runAhead >= 2 { return Selection(tree: TokenTree(), prediction: predictRunAhead(plan.runAhead)) }
        let tree = draft.tree
        let sunkMs = drafterCostsTime ? draft.cost.milliseconds : 0
        let sunkJ = draft.cost.joules
        let pathP = pathProbabilities(tree)
        // Most probable first; equal values keep index order so parents precede children.
        let order = tree.tokens.indices.sorted { pathP[$0] != pathP[$1] ? pathP[$0] > pathP[$1] : $0 < $1 }
        // Predictions with the drafting already done (what the round will measure), and without
        // it (what each choice adds from here): the choice is made on the latter, since the
        // drafting is spent whatever is sent — counting it would favour the largest rounds.
        var candidates = [predict(nodes: 0, accepted: 0, draftMilliseconds: sunkMs, draftJoules: sunkJ)]
        var marginal = [predict(nodes: 0, accepted: 0)]
        var expected = 0.0
        for (k, i) in order.enumerated() {
            expected += pathP[i]
            candidates.append(predict(nodes: k + 1, accepted: expected, draftMilliseconds: sunkMs, draftJoules: sunkJ))
            marginal.append(predict(nodes: k + 1, accepted: expected))
        }
        guard configuration.adaptive else { return Selection(tree: tree, prediction: candidates[tree.count]) }
        // Not sending the draft may also mean letting the target run ahead. A run-ahead of k
        // tokens stands in for this round and the next k − 1 tokens, which the plan expected to
        // draft: it must beat that plan, not only a plain round (at cs = 1 a run-ahead token
        // costs a plain pass, and one declined draft sent the next 16 tokens to the target alone).
        var cap = runAheadCap
        if let bar = plannedDraftScore {
            let score = scorer()
            if !runAheadPredictions(cap: cap).contains(where: { score($0) < bar }) { cap = 0 }
        }
        let ahead = runAheadPredictions(cap: cap, draftMilliseconds: sunkMs, draftJoules: sunkJ)
        var bestN = choose(marginal + runAheadPredictions(cap: cap), steady: steadyPlan)
        if tree.isEmpty { return bestN == 0 ? Selection(tree: tree, prediction: candidates[0]) : Selection(tree: tree, prediction: ahead[bestN - 1]) }
        if plan.isProbe {
            // A probe drafted for a reason: score its most probable nodes, whatever the estimate.
            bestN = bestN > order.count ? min(order.count, 3) : max(bestN, min(order.count, 3))
        }
        var runAhead: RoundPrediction?
        if bestN > order.count {
            runAhead = ahead[bestN - order.count - 1]
            bestN = 0
        }
        selectionIsProbe = plan.isProbe
        if bestN == 0, tokensWithoutDraft >= probeInterval {
            // Re-probe with the single most probable node now and then.
            tokensWithoutDraft = 0
            probeInterval = min(probeInterval * 2, Self.maxProbeInterval)
            bestN = 1
            runAhead = nil
            selectionIsProbe = true
        }
        if bestN == 0 { return Selection(tree: TokenTree(), prediction: runAhead ?? candidates[0]) }
        return Selection(tree: tree.subtree(keeping: Set(order.prefix(bestN))).tree, prediction: candidates[bestN])
    }

    // MARK: Drafting ahead

    /// Whether to draft the next tree while `selection` is being verified (proactive drafting):
    /// only when the expected time saved — the chance that the most probable path is accepted
    /// whole times the draft time it saves, less any drafting that outlasts the wait — beats the
    /// expected waste of drafting for nothing, priced by the objective.
    public func shouldDraftAhead(_ selection: Selection, nextDepth: Int) -> Bool {
        guard configuration.proactive, drafterCostsTime, !selection.tree.isEmpty, nextDepth > 0 else { return false }
        let hit = hitProbability(selection.tree)
        let step = profile.draftStep(width: configuration.budget.maxWidth)
        let draftMs = Double(nextDepth + 1) * step.milliseconds
        // The wait for the verdict: the round without its drafting.
        let wait = predict(nodes: selection.tree.count, accepted: 0).milliseconds
        let saved = hit * draftMs - max(0, draftMs - wait)
        guard saved > 0 else { return false }
        // Held to a minimum speed, time saved is what counts.
        if case .minTokensPerSecond? = preferences.serviceLevel { return true }
        let cs = preferences.objective == .tps ? 0 : preferences.cs.value
        guard cs > 0 else { return true }
        // Weigh the time saved against the energy of a wasted draft, in the cs score's units.
        let waste = predict(nodes: 0, accepted: 0, draftJoules: (1 - hit) * Double(nextDepth + 1) * step.joules)
        let wasteCost = waste.cost - plainPrediction.cost
        let roundCost = max(selection.prediction.cost, 1e-30)
        return (1 - cs) * saved / max(selection.prediction.milliseconds, 1e-9) > cs * wasteCost / roundCost
    }

    /// Probability that the whole most probable root-to-leaf path of `tree` is accepted and the
    /// target's next token is one the drafter would propose first.
    public func hitProbability(_ tree: TokenTree) -> Double {
        let pathP = pathProbabilities(tree)
        guard let best = pathP.indices.max(by: { a, b in
            tree.depths[a] != tree.depths[b] ? tree.depths[a] < tree.depths[b] : pathP[a] < pathP[b]
        }) else { return 0 }
        return pathP[best] * profile.depthAcceptance(tree.depths[best] + 1)
    }

    /// The most probable root-to-leaf path of `tree` among its deepest leaves (node indices).
    public func likelyPath(_ tree: TokenTree) -> [Int] {
        let pathP = pathProbabilities(tree)
        guard let leaf = pathP.indices.max(by: { a, b in
            tree.depths[a] != tree.depths[b] ? tree.depths[a] < tree.depths[b] : pathP[a] < pathP[b]
        }) else { return [] }
        return tree.path(to: leaf)
    }

    // MARK: Learning

    /// Learns from a finished round.
    public func observe(_ record: RoundRecord) {
        let result = record.result, cost = result.cost, tree = record.sent
        let s = Self.smoothing
        func ema(_ old: Double, _ new: Double) -> Double { old == 0 ? new : (1 - s) * old + s * new }
        profile.rounds += 1
        let committed = Double(result.committedCount)
        requestTokens += committed
        requestMilliseconds += record.milliseconds
        if record.prediction.milliseconds > 0, record.milliseconds > 0 {
            // About the last hundred rounds.
            let keep = 0.99
            predictedTokens = keep * predictedTokens + record.prediction.tokens
            predictedMilliseconds = keep * predictedMilliseconds + record.prediction.milliseconds
            measuredTokens = keep * measuredTokens + committed
            measuredMilliseconds = keep * measuredMilliseconds + record.milliseconds
        }
        tokensWithoutDraft = tree.isEmpty ? tokensWithoutDraft + result.passes : 0
        if !tree.isEmpty && !record.plan.isProbe && !selectionIsProbe { probeInterval = 16 }
        // A probe that did better than predicted is followed soon by another (within the
        // exploration budget): the wait doubles only for probes that disappoint.
        if !tree.isEmpty, record.plan.isProbe || selectionIsProbe, committed > record.prediction.tokens { probeInterval = 16 }
        selectionIsProbe = false
        // A model draft judged not worth sending is evidence too: the calibrated confidences of
        // its most likely path say how deep drafting is accepted now (without this, acceptance
        // learned on easier text would keep planning drafts that are then thrown away). Halfway:
        // weighed as one outcome (0.2) instead, acceptance stayed higher and at cs = 1 on MT-bench
        // at 80 ms the plans drafted deeper than the target's staircase pays for (one run: 6 %
        // dearer than a fixed chain of 4; halfway ran 4 % cheaper in another). A few unlikely
        // drafts in a row can take it near zero; what that may cost is bounded in `plan` (a
        // run-ahead ends at the next probe) and `select`.
        if drafterCostsTime, tree.isEmpty, !record.draft.tree.isEmpty {
            let drafted = record.draft.tree
            let path = likelyPath(drafted)
            if profile.depthAcceptance.count < path.count {
                profile.depthAcceptance += [Double](repeating: 0.6, count: path.count - profile.depthAcceptance.count)
            }
            for (d, node) in path.enumerated() {
                profile.depthAcceptance[d] = 0.5 * profile.depthAcceptance[d] + 0.5 * profile.calibrated(drafted.confidences[node])
            }
        }
        // Compute per batch size and the per-round overhead are learned apart, so that
        // extrapolating to unmeasured batch sizes scales the compute only.
        // A run-ahead round's costs are sums over its tokens, learned per token on their own:
        // the server may have speculated inside it (fewer passes than tokens, and its drafting
        // billed as its time), so they say nothing about one plain pass.
        let b = result.batchSize
        if !result.decodedTokens.isEmpty || record.prediction.runAhead > 0 {
            if cost.serverMilliseconds > 0 {
                profile.runAheadMillisecondsPerToken = ema(profile.runAheadMillisecondsPerToken, cost.serverMilliseconds / committed)
            }
        } else {
            if b < profile.targetMilliseconds.count, cost.targetMilliseconds > 0 {
                profile.targetMilliseconds[b] = ema(profile.targetMilliseconds[b], cost.targetMilliseconds)
                profile.targetSamples[b] += 1
            }
            profile.samplingMilliseconds = ema(profile.samplingMilliseconds, cost.samplingMilliseconds)
        }
        if cost.targetMilliseconds > 0, cost.targetJoules > 0 {
            profile.targetJoulesPerMillisecond = ema(profile.targetJoulesPerMillisecond, cost.targetJoules / cost.targetMilliseconds)
            profile.targetEnergySource = cost.targetEnergySource
        }
        if cost.roundTripMilliseconds > 0 {
            profile.network.add(x: Double(tree.count), y: max(0, cost.roundTripMilliseconds - cost.serverMilliseconds))
        }
        profile.bytesUp.add(x: Double(tree.count), y: Double(cost.bytesUp))
        profile.bytesDown.add(x: Double(result.acceptedNodes.count + result.decodedTokens.count), y: Double(cost.bytesDown))
        if drafterCostsTime, !record.draftedAhead, record.plan.budget.maxDepth > 0, record.draft.cost.steps > 0 {
            let w = max(record.plan.budget.maxWidth, 1)
            if profile.draftStepMilliseconds.count < w {
                let extra = w - profile.draftStepMilliseconds.count
                profile.draftStepMilliseconds += [Double](repeating: 0, count: extra)
                profile.draftStepJoules += [Double](repeating: 0, count: extra)
            }
            // Per forward pass made (one per level drafted): a deepening draft stops where its
            // path does, short of the budget's depth.
            let depth = Double(record.draft.cost.steps)
            let share = record.draft.cost.milliseconds > 0
                ? max(0, record.draft.cost.milliseconds - record.draft.cost.catchUpMilliseconds) / record.draft.cost.milliseconds : 1
            profile.draftStepMilliseconds[w - 1] = ema(profile.draftStepMilliseconds[w - 1], record.draft.cost.milliseconds * share / depth)
            profile.draftStepJoules[w - 1] = ema(profile.draftStepJoules[w - 1], record.draft.cost.joules * share / depth)
        }
        if drafterCostsTime, record.drafterLag > 1, record.draft.cost.catchUpMilliseconds > 0, record.draft.cost.milliseconds > 0 {
            let lag = Double(record.drafterLag)
            let share = record.draft.cost.catchUpMilliseconds / record.draft.cost.milliseconds
            profile.catchUpMillisecondsPerToken = ema(profile.catchUpMillisecondsPerToken, record.draft.cost.catchUpMilliseconds / lag)
            profile.catchUpJoulesPerToken = ema(profile.catchUpJoulesPerToken, record.draft.cost.joules * share / lag)
        }
        if let source = record.draft.cost.energySource { profile.draftEnergySource = source }
        if let used = record.aheadOutcome {
            // The first few outcomes are averaged, later ones smoothed.
            let w = max(0.1, 1 / Double(profile.aheadObservations + 1))
            profile.aheadHitRate = (1 - w) * profile.aheadHitRate + w * (used ? 1 : 0)
            profile.aheadObservations += 1
        }
        // The model's running correction: measured ÷ predicted round time (bounded, smoothed).
        if record.prediction.milliseconds > 0, record.milliseconds > 0, profile.knowsTarget, !record.draftedAhead {
            let ratio = min(max(record.milliseconds / (record.prediction.milliseconds / profile.speedCorrection), 0.5), 2)
            profile.speedCorrection = (1 - 0.1) * profile.speedCorrection + 0.1 * ratio
        }
        guard !tree.isEmpty else { return }
        var onPath = Set(result.acceptedNodes)
        onPath.insert(-1)
        let accepted = Set(result.acceptedNodes)
        for i in 0..<tree.count where onPath.contains(tree.parents[i]) {
            let bin = min(Int(Double(min(max(tree.confidences[i], 0), 1)) * 10), 9)
            profile.calibrationOffered[bin] += 1
            if accepted.contains(i) { profile.calibrationAccepted[bin] += 1 }
        }
        // Depth acceptance: depth d offered when the path reached d-1 and the tree went deeper.
        if profile.depthAcceptance.count < tree.maxDepth {
            profile.depthAcceptance += [Double](repeating: 0.6, count: tree.maxDepth - profile.depthAcceptance.count)
        }
        if profile.depthObservations.count < profile.depthAcceptance.count {
            profile.depthObservations += [Int](repeating: 0, count: profile.depthAcceptance.count - profile.depthObservations.count)
        }
        for d in 1...tree.maxDepth {
            guard result.acceptedNodes.count >= d - 1 else { break }
            let hit = result.acceptedNodes.count >= d ? 1.0 : 0.0
            // The first observations are averaged with the 0.6 prior (counted twice), so that a
            // few good probes can bring drafting back; later ones are smoothed.
            let w = max(s, 1 / Double(profile.depthObservations[d - 1] + 3))
            profile.depthAcceptance[d - 1] = (1 - w) * profile.depthAcceptance[d - 1] + w * hit
            profile.depthObservations[d - 1] += 1
        }
    }
}
