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
    public var configuration: SpeculationConfiguration

    public init(verifier: any Verifier, drafter: (any Drafter)?, tokenizer: any Tokenizer,
                configuration: SpeculationConfiguration = SpeculationConfiguration()) {
        self.verifier = verifier
        self.drafter = drafter
        self.tokenizer = tokenizer
        self.configuration = configuration
    }

    /// Generates from prompt token ids; `onText` receives each complete piece of text (return
    /// false to stop early). `stats.speculative` carries the round telemetry.
    public func generate(
        promptTokens: [Int32], parameters: GenerationParameters,
        onText: (String) -> Bool = { _ in true }
    ) throws -> GenerationResult {
        guard !promptTokens.isEmpty else { throw GenerationError.emptyPrompt }
        try parameters.sampling.validate()
        let limit = verifier.contextLength
        guard promptTokens.count + parameters.maxTokens <= limit else {
            throw GenerationError.tooLong(promptTokens: promptTokens.count, maxTokens: parameters.maxTokens, contextLength: limit)
        }
        let controller = SpeculationController(configuration: configuration, drafterCostsTime: drafter?.costsTimePerStep ?? false)
        var stats = GenerationStats(promptTokens: promptTokens.count)
        var spec = SpeculativeStats(drafter: drafter?.name ?? "none")
        var output = OutputStream(tokenizer: tokenizer, parameters: parameters)

        var start = Clock.now
        let capacity = min(limit, promptTokens.count + parameters.maxTokens + configuration.budget.maxNodes + 1)
        try verifier.begin(VerificationRequest(
            prompt: promptTokens, sampling: parameters.sampling,
            suppressedTokens: parameters.stopAtEndOfText ? [] : tokenizer.endOfGenerationTokens.sorted(),
            capacity: capacity))
        defer { verifier.end() }
        try drafter?.begin(prompt: promptTokens, sampling: parameters.sampling)
        stats.prefillMilliseconds = Clock.millisecondsSince(start)
        start = Clock.now

        var context = promptTokens
        while !output.isFinished {
            // 1. Draft, within what may still be emitted and what the target can hold.
            let remaining = parameters.maxTokens - output.tokens.count
            let room = limit - context.count - 1
            let budget = drafter == nil ? .none : controller.budget(remaining: remaining, room: room)
            let draftStart = Clock.now
            var tree = TokenTree()
            if let drafter, budget != .none {
                tree = try drafter.draft(context: context, budget: budget)
                try Self.check(tree, budget: budget, vocabularySize: verifier.vocabularySize)
            }
            let draftMs = Clock.millisecondsSince(draftStart)
            tree = controller.select(tree, draftMilliseconds: draftMs)

            // 2. Verify in one target pass; the verifier keeps the accepted path in its cache.
            let result = try verifier.verify(tree)
            controller.observe(tree: tree, result: result, draftMilliseconds: draftMs, draftDepth: budget.maxDepth,
                               catchUpMilliseconds: budget == .none ? 0 : drafter?.lastCatchUpMilliseconds ?? 0)
            spec.record(tree: tree, result: result, draftMilliseconds: draftMs)

            // 3. Emit the accepted tokens and the target's own, stopping exactly where plain would.
            let committed = result.acceptedNodes.map { tree.tokens[$0] } + [result.nextToken]
            for token in committed {
                context.append(token)
                guard output.append(token, onText: onText) else { break }
            }
        }
        output.close(onText: onText)
        drafter?.end(context: context, promptCount: promptTokens.count)
        stats.decodeMilliseconds = Clock.millisecondsSince(start)
        stats.generatedTokens = output.tokens.count
        spec.totalMilliseconds = stats.decodeMilliseconds
        spec.emittedTokens = output.tokens.count
        spec.remote = verifier.transport
        stats.speculative = spec
        return GenerationResult(text: output.text, promptTokens: promptTokens, tokens: output.tokens,
                                finishReason: output.finish ?? .length, stats: stats)
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
