import ArborTokenizers

/// Generation with a drafter and a verifier: each round drafts a token tree, scores it in one
/// target pass, keeps the accepted path plus the target's own next token, and rolls both sides
/// back to that path. With no drafter (or empty trees) it is plain decoding through the same loop.
///
/// Output is the target's own: greedy runs produce exactly plain greedy's tokens, sampled runs
/// follow the target's distribution (see `TreeAcceptor`), and the stop rules are the ones plain
/// generation applies, token by token (`OutputStream`).
public final class SpeculativeGenerator {
    public let verifier: any Verifier
    public let drafter: (any Drafter)?
    public let tokenizer: any Tokenizer
    /// Plans every round; it and what it learned outlive each request (give the same policy to
    /// the next generator, or persist `policy.profile`).
    public let policy: RoundPolicy
    public var configuration: SpeculationConfiguration {
        get { policy.configuration }
        set { policy.configuration = newValue }
    }

    public init(verifier: any Verifier, drafter: (any Drafter)?, tokenizer: any Tokenizer,
                configuration: SpeculationConfiguration = SpeculationConfiguration(), profile: CostProfile = CostProfile()) {
        self.verifier = verifier
        self.drafter = drafter
        self.tokenizer = tokenizer
        policy = RoundPolicy(configuration: configuration, drafterCostsTime: drafter?.costsTimePerStep ?? false, profile: profile)
    }

    public init(verifier: any Verifier, drafter: (any Drafter)?, tokenizer: any Tokenizer, policy: RoundPolicy) {
        self.verifier = verifier
        self.drafter = drafter
        self.tokenizer = tokenizer
        self.policy = policy
    }

    /// A tree drafted ahead, during the previous round's verification, for a context assumed to
    /// be committed by then.
    private struct AheadDraft {
        /// The context it continues (committed context + the most likely path of the tree sent).
        var context: [Int32]
        var draft: Draft
    }

    /// Generates from prompt token ids; `onText` receives each complete piece of text (return
    /// false to stop early). `stats.speculative` carries the round telemetry and the cost report.
    public func generate(
        promptTokens: [Int32], parameters: GenerationParameters,
        onText: (String) -> Bool = { _ in true }
    ) throws -> GenerationResult {
        try generate(promptTokens: promptTokens, parameters: parameters, onRound: { _ in }, onPiece: { onText($0.text) })
    }

    /// As `generate(promptTokens:parameters:onText:)`, telling `onRound` of every round as it
    /// ends (before its tokens are emitted) and marking each piece of text drafted-and-accepted or
    /// the target's own. Return false from `onPiece` to stop early.
    public func generate(
        promptTokens: [Int32], parameters: GenerationParameters,
        onRound: (RoundRecord) -> Void, onPiece onText: (TextPiece) -> Bool
    ) throws -> GenerationResult {
        guard !promptTokens.isEmpty else { throw GenerationError.emptyPrompt }
        try parameters.sampling.validate()
        let limit = verifier.contextLength
        guard promptTokens.count + parameters.maxTokens <= limit else {
            throw GenerationError.tooLong(promptTokens: promptTokens.count, maxTokens: parameters.maxTokens, contextLength: limit)
        }
        let meter = EnergyMeter(wattsPerCore: configuration.wattsPerCore)
        var stats = GenerationStats(promptTokens: promptTokens.count)
        var spec = SpeculativeStats(drafter: drafter?.name ?? "none")
        var report = CostReport(preferences: configuration.preferences, draftEnergySource: meter.source)
        var output = OutputStream(tokenizer: tokenizer, parameters: parameters)
        // Drafting ahead needs a verifier that lets this thread work while it waits, and
        // deterministic drafts (a sampled draft must not be chosen by the target's verdict).
        let pipelined = configuration.proactive && parameters.sampling.isGreedy ? verifier as? PipelinedVerifier : nil
        policy.overlapsDrafting = pipelined != nil && drafter?.costsTimePerStep == true
        policy.drafterDeepens = drafter?.deepens == true
        // Run-ahead rounds: only where the verifier offers them (a remote target) and sizing is adaptive.
        let runner = verifier as? RunAheadVerifier
        policy.runAheadLimit = configuration.adaptive ? min(configuration.maxRunAhead, runner?.maxRunAhead ?? 0) : 0
        policy.beginRequest()

        var start = MonotonicClock.now
        let capacity = min(limit, promptTokens.count + parameters.maxTokens + configuration.budget.maxNodes + 1)
        try verifier.begin(VerificationRequest(
            prompt: promptTokens, sampling: parameters.sampling,
            suppressedTokens: parameters.stopAtEndOfText ? [] : tokenizer.endOfGenerationTokens.sorted(),
            capacity: capacity))
        defer { verifier.end() }
        try drafter?.begin(prompt: promptTokens, sampling: parameters.sampling)
        stats.prefillMilliseconds = MonotonicClock.millisecondsSince(start)
        start = MonotonicClock.now

        var context = promptTokens
        var ahead: AheadDraft?
        // Committed tokens the drafter has not read, beyond the last round's (after rounds that
        // drafted nothing): drafting next would begin by reading them.
        var drafterLag = 0
        while !output.isFinished {
            let roundStart = MonotonicClock.now
            // 1. Plan within what may still be emitted and what the target can hold, then draft
            //    (or take the tree drafted ahead, when its assumed context came true).
            let remaining = parameters.maxTokens - output.tokens.count
            let room = limit - context.count - 1
            let plan = drafter == nil ? policy.planWithoutDrafting(remaining: remaining, room: room)
                : policy.plan(remaining: remaining, room: room, maxTreeNodes: verifier.maxTreeNodes, drafterLag: drafterLag)
            var draft = Draft()
            var draftedAhead = false
            if let a = ahead {
                ahead = nil
                if a.context == context, !plan.isPlain, let fitted = Self.fit(a.draft.tree, to: plan.budget) {
                    try Self.check(fitted, budget: plan.budget, vocabularySize: verifier.vocabularySize)
                    draft = Draft(tree: fitted, cost: a.draft.cost)
                    draftedAhead = true
                    spec.proactive.hits += 1
                    spec.proactive.savedDraftMilliseconds += a.draft.cost.milliseconds
                } else {
                    spec.proactive.misses += 1
                    spec.proactive.wastedDraftMilliseconds += a.draft.cost.milliseconds
                }
            }
            if !draftedAhead, let drafter, !plan.isPlain {
                draft = try drafter.measuredDraft(context: context, budget: plan.budget, meter: meter)
                try Self.check(draft.tree, budget: plan.budget, vocabularySize: verifier.vocabularySize)
            }
            var selection = policy.select(draft, plan: plan)
            if !selection.tree.isEmpty, selection.tree.count < configuration.minDraftNodes {
                // Too small to be worth a tree (the user's minimum): the round goes without it.
                selection = policy.select(Draft(), plan: plan)
            }
            if draftedAhead {
                // Already paid for during the last round: this round's time has no drafting in it.
                selection.prediction = policy.predict(nodes: selection.tree.count, accepted: selection.prediction.tokens - 1)
            }

            // 2. Verify in one target pass; the verifier keeps the accepted path in its cache.
            //    While a remote target works, draft the next tree for the most likely outcome.
            //    Or, with nothing worth sending, let the target decode several tokens by itself.
            let result: VerificationResult
            var aheadJoules = 0.0
            // A round that sends no draft, before a probe or a return to drafting: a model drafter
            // reads the committed tokens while the target works, so that the next draft does not
            // begin with a long catch-up.
            let shadowed = selection.tree.isEmpty && policy.catchUpIsDue(after: max(1, selection.prediction.runAhead)) ? drafter : nil
            var caughtUp = false
            func catchUp() {
                if let c = try? shadowed?.measuredCatchUp(context: context, meter: meter) {
                    aheadJoules += c.joules
                    caughtUp = true
                }
            }
            if let runner, selection.prediction.runAhead >= 2 {
                result = try runner.runAhead(selection.prediction.runAhead, whileWaiting: catchUp)
            } else if shadowed != nil, let overlapping = verifier as? PipelinedVerifier {
                try overlapping.send(selection.tree)
                catchUp()
                result = try overlapping.receive()
            } else if let pipelined, let drafter, policy.shouldDraftAhead(selection, nextDepth: plan.budget.plannedDepth) {
                try pipelined.send(selection.tree)
                let path = policy.likelyPath(selection.tree).map { selection.tree.tokens[$0] }
                var budget = plan.budget
                // One level deeper: the next round's roots are the children of the target's own
                // token, which is this tree's root.
                budget.maxDepth += 1
                budget.maxNodes += budget.maxWidth
                budget.deepening?.plannedDepth += 1
                let assumed = context + path
                if let early = try? drafter.measuredDraft(context: assumed, budget: budget, meter: meter) {
                    ahead = AheadDraft(context: assumed, draft: early)
                    aheadJoules = early.cost.joules
                    spec.proactive.started += 1
                }
                result = try pipelined.receive()
            } else {
                result = try verifier.verify(selection.tree)
            }
            let committed = result.acceptedNodes.map { selection.tree.tokens[$0] } + [result.nextToken] + result.decodedTokens
            let aheadStarted = ahead != nil
            if let a = ahead {
                // The tree drafted ahead continues `assumed`; it serves the next round only if the
                // verdict committed exactly that path, and then only under the target's own token.
                let expected = Array(a.context[context.count...])
                if committed.count == expected.count + 1, Array(committed.dropLast()) == expected,
                   let root = a.draft.tree.child(of: -1, token: result.nextToken) {
                    ahead = AheadDraft(context: a.context + [result.nextToken],
                                       draft: Draft(tree: a.draft.tree.descendants(of: root), cost: a.draft.cost))
                } else {
                    spec.proactive.misses += 1
                    spec.proactive.wastedDraftMilliseconds += a.draft.cost.milliseconds
                    ahead = nil
                }
            }

            // 3. One record of the round feeds the policy and the statistics.
            var use = ResourceUse(
                targetMilliseconds: result.cost.serverMilliseconds, targetJoules: result.cost.targetJoules,
                // Drafting ahead (and catching up in the shadow) is billed in the round that did it, used or wasted.
                draftJoules: (draftedAhead ? 0 : draft.cost.joules) + aheadJoules,
                bytesUp: Double(result.cost.bytesUp), bytesDown: Double(result.cost.bytesDown))
            if use.targetJoules == 0 { use.targetJoules = result.cost.serverMilliseconds * policy.fallbackTargetJoulesPerMillisecond }
            var record = RoundRecord(plan: plan, draft: draft, sent: selection.tree, prediction: selection.prediction, result: result,
                                     use: use, milliseconds: MonotonicClock.millisecondsSince(roundStart), draftedAhead: draftedAhead,
                                     aheadOutcome: aheadStarted ? ahead != nil : nil)
            record.drafterLag = drafterLag
            // The drafter read the context this round if it drafted (now or ahead) or caught up.
            let drafterRead = draftedAhead || (drafter != nil && !plan.isPlain)
            drafterLag = drafterRead ? 0 : (caughtUp ? 0 : drafterLag) + committed.count
            policy.observe(record)
            spec.record(record)
            report.add(record)
            onRound(record)

            // 4. Emit the accepted tokens and the target's own, stopping exactly where plain would.
            for (i, token) in committed.enumerated() {
                context.append(token)
                guard output.append(token, drafted: i < result.acceptedNodes.count, onText: onText) else { break }
            }
        }
        if let a = ahead {
            spec.proactive.misses += 1
            spec.proactive.wastedDraftMilliseconds += a.draft.cost.milliseconds
        }
        output.close(onText: onText)
        drafter?.end(context: context, promptCount: promptTokens.count)
        stats.decodeMilliseconds = MonotonicClock.millisecondsSince(start)
        stats.generatedTokens = output.tokens.count
        spec.totalMilliseconds = stats.decodeMilliseconds
        spec.emittedTokens = output.tokens.count
        spec.remote = verifier.transport
        report.serviceLevelNote = Self.serviceLevelNote(report, policy: policy)
        spec.cost = report
        stats.speculative = spec
        return GenerationResult(text: output.text, promptTokens: promptTokens, tokens: output.tokens,
                                finishReason: output.finish ?? .length, stats: stats)
    }

    /// `tree` cut to `budget`: its first nodes within the depth (parents come first, so the cut
    /// is a tree), or nil if nothing fits.
    static func fit(_ tree: TokenTree, to budget: DraftBudget) -> TokenTree? {
        let keep = tree.tokens.indices.filter { tree.depths[$0] <= budget.maxDepth }.prefix(budget.maxNodes)
        guard !keep.isEmpty else { return nil }
        let cut = tree.subtree(keeping: Set(keep)).tree
        return cut.maxWidth <= budget.maxWidth ? cut : nil
    }

    /// Says when a service level was asked for and the request missed it, with what it achieved.
    static func serviceLevelNote(_ r: CostReport, policy: RoundPolicy) -> String? {
        switch r.serviceLevel {
        case let .minTokensPerSecond(x)? where r.tokensPerSecond < x:
            return "the SLO of \(decimal(x, 1)) tokens/s was not met: \(decimal(r.tokensPerSecond, 1)) tokens/s measured; "
                + "the fastest plan the profile predicts gives about \(decimal(policy.bestPredictedTokensPerSecond, 1)) tokens/s"
        case let .maxCostPerMillionTokens(y)? where r.costPerMillionTokens > y:
            return "the SLO of \(decimal(y, 4)) \(r.objective.unit) per million tokens was not met: \(decimal(r.costPerMillionTokens, 4)) measured; "
                + "the cheapest plan the profile predicts costs about \(decimal(policy.lowestPredictedCostPerMillionTokens, 4))"
        default:
            return nil
        }
    }

    /// A drafter's tree must respect the budget and the vocabulary (drafters are code we trust
    /// less than the verifier: a bad tree is an error, never a wrong output).
    static func check(_ tree: TokenTree, budget: DraftBudget, vocabularySize: Int) throws(SpeculativeError) {
        guard tree.count <= budget.maxNodes else { throw .treeTooLarge(nodes: tree.count, limit: budget.maxNodes) }
        guard tree.maxDepth <= budget.maxDepth else { throw .invalidTree("depth \(tree.maxDepth) exceeds the budget's \(budget.maxDepth)") }
        for t in tree.tokens where t < 0 || Int(t) >= vocabularySize {
            throw .invalidTree("token \(t) is outside the target's vocabulary (0..<\(vocabularySize))")
        }
    }
}

/// `x` rounded to `digits` decimals, as text (the engine has no Foundation formatting).
func decimal(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return "\(x)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(x) * scale).rounded()
    let whole = Int(r / scale), frac = Int(r.truncatingRemainder(dividingBy: scale))
    let sign = x < 0 && r > 0 ? "-" : ""
    guard digits > 0 else { return sign + String(whole) }
    let f = String(frac)
    return sign + String(whole) + "." + String(repeating: "0", count: max(0, digits - f.count)) + f
}
