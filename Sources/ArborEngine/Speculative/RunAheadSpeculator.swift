/// The target's side of a run-ahead round, with speculation: a server asked to decode several
/// tokens by itself drafts with a drafter of its own and scores each tree on the session's
/// verifier, round after round, until it has the tokens asked for (server-side speculation
/// inside one exchange: `arbor serve --decode-drafter`).
///
/// Output is the target's own, as in `SpeculativeGenerator`: the verifier keeps what the target
/// accepts (greedy: the plain tokens; sampled: the target's distribution). Each round is planned
/// by a `RoundPolicy` for speed alone (the drafter runs on the server's cores, so its time is the
/// server's time), which also decides when drafting does not pay and a plain pass is better.
///
/// One speculator serves one session: the drafter keeps its state between the session's
/// run-ahead rounds and catches up with the tokens the client committed in between.
public final class RunAheadSpeculator {
    public let drafter: any Drafter
    /// Plans each round; its profile is the server's to keep between sessions.
    public let policy: RoundPolicy
    /// What the rounds did (for tests and diagnostics).
    public private(set) var stats: SpeculativeStats

    private var sampling: SamplingParameters?
    /// Committed tokens when the drafter began, and the length of the committed context after
    /// this speculator's last round (tokens beyond it were committed by the client's own rounds).
    private var promptCount = 0
    private var contextEnd = 0
    /// Committed tokens the drafter has not read (see `RoundRecord.drafterLag`).
    private var drafterLag = 0

    public init(drafter: any Drafter, configuration: SpeculationConfiguration, profile: CostProfile = CostProfile()) {
        self.drafter = drafter
        var c = configuration
        // Nothing on this side is remote, and nothing is drafted ahead: a round is draft, then verify.
        c.maxRunAhead = 0
        c.proactive = false
        policy = RoundPolicy(configuration: c, drafterCostsTime: drafter.costsTimePerStep, profile: profile)
        stats = SpeculativeStats(drafter: drafter.name)
    }

    /// What one round committed and cost.
    public struct Round: Sendable {
        public init(tokens: [Int32], result: VerificationResult, draft: DraftCost) {
            self.tokens = tokens
            self.result = result
            self.draft = draft
        }

        /// Committed tokens in order: the accepted drafted ones, then the target's own.
        public var tokens: [Int32]
        /// The verifier's result (its `cost` is the target pass alone).
        public var result: VerificationResult
        /// Drafting (and the drafter reading the context, when `begin` was not called first).
        public var draft: DraftCost
    }

    /// Starts the session's request: the drafter reads `prompt` (as a local drafter does with
    /// the target's prefill), so that run-ahead rounds pay only for drafting. Returns what it cost.
    @discardableResult
    public func begin(prompt: [Int32], sampling: SamplingParameters, meter: EnergyMeter) throws -> DraftCost {
        let cost = try drafter.measuredBegin(prompt: prompt, sampling: sampling, meter: meter)
        self.sampling = sampling
        promptCount = prompt.count
        contextEnd = prompt.count
        drafterLag = 0
        policy.beginRequest()
        return cost
    }

    /// One round on `verifier` (in a request; its committed context continues the session),
    /// committing between 1 and `remaining` tokens with at most `room` cache slots used beyond
    /// the pending token. `sampling` is the session's (the drafter proposes under it). Begins the
    /// request first if `begin` was not called (its cost is then part of this round's drafting).
    public func round(verifier: LocalVerifier, sampling: SamplingParameters, remaining: Int, room: Int, meter: EnergyMeter) throws -> Round {
        let start = MonotonicClock.now
        let context = verifier.committed
        let setup = self.sampling == nil ? try begin(prompt: context, sampling: sampling, meter: meter) : DraftCost()
        drafterLag += max(0, context.count - contextEnd)
        let plan = policy.plan(remaining: max(1, remaining), room: max(0, room), drafterLag: drafterLag)
        var draft = Draft()
        // A drafter that fails (a context beyond a draft model's length, say) or proposes an
        // invalid tree costs the round its draft, not the client its request.
        if !plan.isPlain, let d = try? drafter.measuredDraft(context: context, budget: plan.budget, meter: meter),
           (try? SpeculativeGenerator.check(d.tree, budget: plan.budget, vocabularySize: verifier.vocabularySize)) != nil {
            draft = d
        }
        let selection = policy.select(draft, plan: plan)
        let result = try verifier.verify(selection.tree)
        let committed = result.acceptedNodes.map { selection.tree.tokens[$0] } + [result.nextToken]

        let use = ResourceUse(targetMilliseconds: result.cost.serverMilliseconds, targetJoules: result.cost.targetJoules,
                              draftJoules: draft.cost.joules)
        var record = RoundRecord(plan: plan, draft: draft, sent: selection.tree, prediction: selection.prediction, result: result,
                                 use: use, milliseconds: MonotonicClock.millisecondsSince(start) - setup.milliseconds)
        record.drafterLag = drafterLag
        drafterLag = plan.isPlain ? drafterLag + committed.count : 0
        contextEnd = context.count + committed.count
        policy.observe(record)
        stats.record(record)

        var cost = draft.cost
        cost.milliseconds += setup.milliseconds
        cost.cpuMilliseconds += setup.cpuMilliseconds
        cost.joules += setup.joules
        cost.energySource = cost.energySource ?? setup.energySource
        return Round(tokens: committed, result: result, draft: cost)
    }

    /// The session ended; `context` is its final committed sequence.
    public func end(context: [Int32]) {
        guard sampling != nil else { return }
        drafter.end(context: context, promptCount: promptCount)
        sampling = nil
    }
}
