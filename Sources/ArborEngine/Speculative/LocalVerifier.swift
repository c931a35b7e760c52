import ArborModels

/// A `Verifier` running the target model in this process.
public final class LocalVerifier: Verifier {
    public let model: any LanguageModel
    /// Tokens per forward call while reading the prompt.
    public var prefillChunk: Int
    /// Measures the energy of each target pass (RAPL where readable, else CPU time × W/core).
    public var meter = EnergyMeter()

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

    /// Forgets the committed tokens after the first `count` (the last one kept becomes the
    /// pending token): a server that speculated past an end-of-generation token keeps its state
    /// exactly at the tokens it hands back. No-op unless 1 ≤ `count` < the committed count.
    public func rollBack(toCommitted count: Int) {
        guard let cache, count >= 1, count < history.count else { return }
        history.removeLast(history.count - count)
        // The cache holds every committed token but the pending one.
        cache.truncate(to: count - 1)
    }

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
        let pass = try batch(for: tree)
        let start = MonotonicClock.now
        let reading = meter.read()
        let logits = try model.forward(pass.batch, cache: pass.cache)
        let (cpu, joules) = meter.since(reading)
        var result = try finish(tree, logits: logits, base: pass.base, targetMilliseconds: MonotonicClock.millisecondsSince(start))
        result.cost.targetCPUMilliseconds = cpu
        result.cost.targetJoules = joules
        result.cost.targetEnergySource = meter.source
        return result
    }

    /// Verifies several requests' trees in one target pass (a server's sessions sharing the
    /// model): every weight is read once for all of them, and each verdict is exactly the one
    /// `verify` would give alone. Each result reports its share of the pass's time, by tokens.
    /// Verifiers on different models, or a pass the model refuses, fall back to one pass each.
    public static func verify(together items: [(verifier: LocalVerifier, tree: TokenTree)]) -> [Result<VerificationResult, any Error>] {
        var results = [Result<VerificationResult, any Error>?](repeating: nil, count: items.count)
        var passes: [(index: Int, pass: Pass)] = []
        for (i, item) in items.enumerated() {
            guard item.verifier.model === items[0].verifier.model else {
                results[i] = Result { try item.verifier.verify(item.tree) }
                continue
            }
            do { passes.append((i, try item.verifier.batch(for: item.tree))) } catch { results[i] = .failure(error) }
        }
        if passes.count == 1 {
            let i = passes[0].index
            results[i] = Result { try items[i].verifier.verify(items[i].tree) }
        } else if !passes.isEmpty {
            let start = MonotonicClock.now
            let meter = items[0].verifier.meter
            let reading = meter.read()
            do {
                let logits = try items[0].verifier.model.forward(segments: passes.map { ($0.pass.batch, $0.pass.cache) })
                let ms = MonotonicClock.millisecondsSince(start)
                let (cpu, joules) = meter.since(reading)
                let total = Double(passes.reduce(0) { $0 + $1.pass.batch.tokens.count })
                for (k, p) in passes.enumerated() {
                    // Each session is billed its share of the pass, by tokens.
                    let share = Double(p.pass.batch.tokens.count) / total
                    results[p.index] = Result {
                        var r = try items[p.index].verifier.finish(items[p.index].tree, logits: logits[k], base: p.pass.base, targetMilliseconds: ms * share)
                        r.cost.targetCPUMilliseconds = cpu * share
                        r.cost.targetJoules = joules * share
                        r.cost.targetEnergySource = meter.source
                        return r
                    }
                }
            } catch {
                // The model checks every segment before touching a cache: each can run alone.
                for p in passes { results[p.index] = Result { try items[p.index].verifier.verify(items[p.index].tree) } }
            }
        }
        return results.map { $0! }
    }

    /// One target pass: the batch (pending token, then the tree) and the cache it extends.
    struct Pass {
        let batch: ForwardBatch
        let cache: any KVCache
        let base: Int
    }

    /// The batch that scores `tree` after the committed context.
    func batch(for tree: TokenTree) throws -> Pass {
        guard let cache, acceptor != nil else { throw SpeculativeError.notStarted }
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
        return Pass(batch: ForwardBatch(tokens: tokens, positions: positions, mask: .tree(parents: parents)), cache: cache, base: base)
    }

    /// The verdict from the pass's logits; the cache keeps exactly the accepted path.
    func finish(_ tree: TokenTree, logits raw: Logits, base: Int, targetMilliseconds: Double) throws -> VerificationResult {
        guard let cache, var acceptor else { throw SpeculativeError.notStarted }
        // Take the acceptor out while it works so its scratch buffers stay uniquely owned (no copy).
        self.acceptor = nil
        defer { self.acceptor = acceptor }
        var logits = raw
        let sampleStart = MonotonicClock.now
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
            acceptedNodes: verdict.accepted, nextToken: verdict.next, batchSize: tree.count + 1,
            targetMilliseconds: targetMilliseconds, samplingMilliseconds: MonotonicClock.millisecondsSince(sampleStart))
    }

    public func end() {
        cache = nil
        acceptor = nil
        history = []
    }
}
