import ArborModels

/// A `Verifier` running the target model in this process.
public final class LocalVerifier: Verifier {
    public let model: any LanguageModel
    /// Tokens per forward call while reading the prompt.
    public var prefillChunk: Int

    private var cache: (any KVCache)?
    private var acceptor: TreeAcceptor?
    /// Committed tokens including the pending one.
    private var history: [Int32] = []
    private var suppressed: [Int32] = []
    /// Tests only: see `TreeAcceptor.drawsFromTargetAfterRejection`.
    var brokenAcceptanceForTesting = false

    public init(model: any LanguageModel, prefillChunk: Int = 256) {
        self.model = model
        self.prefillChunk = prefillChunk
    }

    public var vocabularySize: Int { model.configuration.vocabularySize }
    public var contextLength: Int { model.configuration.contextLength }
    /// The committed sequence, including the pending token (for tests and diagnostics).
    public var committed: [Int32] { history }

    public func begin(_ request: VerificationRequest) throws {
        guard !request.prompt.isEmpty else { throw GenerationError.emptyPrompt }
        acceptor = try TreeAcceptor(sampling: request.sampling)
        acceptor?.drawsFromTargetAfterRejection = brokenAcceptanceForTesting
        suppressed = request.suppressedTokens.filter { $0 >= 0 && Int($0) < vocabularySize }
        let cache = model.makeCache(capacity: min(max(request.capacity, request.prompt.count + 1), contextLength))
        // Everything but the pending token; its logits are computed with the first tree.
        try model.prefill(request.prompt.dropLast(), cache: cache, chunk: prefillChunk)
        self.cache = cache
        history = request.prompt
    }

    public func verify(_ tree: TokenTree) throws -> VerificationResult {
        guard let cache, var acceptor else { throw SpeculativeError.notStarted }
        // Take the acceptor out while it works so its scratch buffers stay uniquely owned (no copy).
        self.acceptor = nil
        defer { self.acceptor = acceptor }
        let base = cache.count
        let n = tree.count + 1
        guard base + n <= contextLength else { throw SpeculativeError.treeTooLarge(nodes: tree.count, limit: contextLength - base - 1) }
        // Batch row 0 is the pending token; node i is row i + 1 at position base + depth.
        var tokens = [Int32](repeating: 0, count: n)
        var positions = [Int32](repeating: 0, count: n)
        var parents = [Int](repeating: -1, count: n)
        tokens[0] = history[history.count - 1]
        positions[0] = Int32(base)
        for i in 0..<tree.count {
            tokens[i + 1] = tree.tokens[i]
            positions[i + 1] = Int32(base + tree.depths[i])
            parents[i + 1] = tree.parents[i] + 1
        }
        let start = Clock.now
        var logits = try model.forward(ForwardBatch(tokens: tokens, positions: positions, mask: .tree(parents: parents)), cache: cache)
        let targetMs = Clock.millisecondsSince(start)
        let sampleStart = Clock.now
        let v = logits.vocabularySize
        if !suppressed.isEmpty {
            for r in 0..<logits.rowCount {
                for t in suppressed { logits.values[r * v + Int(t)] = -.infinity }
            }
        }
        let verdict = logits.values.withUnsafeBufferPointer { all in
            acceptor.accept(tree: tree, history: history) { node in
                UnsafeBufferPointer(rebasing: all[((node + 1) * v)..<((node + 2) * v)])
            }
        }
        try cache.keepPath(base: base, indices: [0] + verdict.accepted.map { $0 + 1 })
        for node in verdict.accepted { history.append(tree.tokens[node]) }
        history.append(verdict.next)
        return VerificationResult(
            acceptedNodes: verdict.accepted, nextToken: verdict.next, batchSize: n,
            targetMilliseconds: targetMs, samplingMilliseconds: Clock.millisecondsSince(sampleStart))
    }

    public func end() {
        cache = nil
        acceptor = nil
        history = []
    }
}
