import ArborEngine
import ArborModels
import ArborTokenizers

/// Measurements of one model's forward pass: decoding, prefill and batched scoring.
///
/// Every method times only the model work it names (forward calls and, for decoding, sampling)
/// on a cache that was prepared untimed, and leaves the cache rolled back so the next repeat
/// sees the same context length. Wall time from the monotonic clock.
public final class ModelBenchmark {
    public let model: any LanguageModel
    public let tokenizer: any Tokenizer

    public init(model: any LanguageModel, tokenizer: any Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// English prose and Python, repeated for as many tokens as a benchmark needs.
    /// `scripts/bench_reference.py` uses the same text, so both engines see the same token ids.
    public static let text = """
        The old lighthouse keeper climbed the spiral stairs every evening, carrying a lantern \
        and a thermos of tea, to watch the ships pass through the narrow channel below. \
        def merge_sorted(a, b):
            out, i, j = [], 0, 0
            while i < len(a) and j < len(b):
                if a[i] <= b[j]:
                    out.append(a[i]); i += 1
                else:
                    out.append(b[j]); j += 1
            return out + a[i:] + b[j:]
        In the spring the orchard behind the station filled with blossom, and the keeper's \
        daughter counted the bees while her brother repaired the nets for the autumn catch.

        """

    /// The first `count` tokens of `text` repeated (BOS first where the model wants it;
    /// special-token text is not parsed).
    public func tokens(count: Int) -> [Int32] {
        guard count > 0 else { return [] }
        var repeats = 1
        while true {
            let ids = tokenizer.encode(String(repeating: Self.text, count: repeats), addSpecial: true, parseSpecial: false)
            if ids.count >= count { return Array(ids.prefix(count)) }
            repeats *= 2
        }
    }

    // MARK: - Decode

    /// One decoding run.
    public struct DecodeRun: Sendable {
        /// Wall time of the timed steps: `steps` × (one-token forward + greedy sample).
        public var ms: Double
        public var steps: Int
        /// CPU time (user + system, all threads of the process) during the timed steps.
        public var cpuMs: Double
        /// The part of `ms` spent sampling (masking end-of-generation tokens + greedy pick).
        public var sampleMs: Double
        /// Untimed prefill of the prompt, for reference.
        public var prefillMs: Double
        /// The greedy tokens: the one sampled from the prompt's logits, then one per step.
        public var generated: [Int32]

        public var tokensPerSecond: Double { ms > 0 ? Double(steps) / (ms / 1000) : 0 }
    }

    /// Greedy decoding of `steps` tokens after `prompt`, end-of-generation tokens masked (they
    /// are never sampled, as with llama.cpp's `ignore_eos`).
    ///
    /// The cache is emptied, the prompt is prefilled in one call (untimed) and the first token is
    /// sampled from its logits (untimed; `onFirstToken` is called right then). The timed part is
    /// `steps` iterations of: forward the last token, sample the next one greedily. So `steps`
    /// forward passes produce `steps` tokens after the first; tokens/s = steps / time.
    public func decode(
        prompt: [Int32], steps: Int, cache: any KVCache, onFirstToken: () -> Void = {}
    ) throws -> DecodeRun {
        precondition(!prompt.isEmpty && steps >= 0)
        cache.truncate(to: 0)
        var sampler = try StandardSampler(parameters: .greedy)
        let eog = Array(tokenizer.endOfGenerationTokens)
        var generated: [Int32] = []
        generated.reserveCapacity(steps + 1)

        func next(_ logits: inout Logits) -> Int32 {
            let v = logits.vocabularySize, r = logits.rowCount - 1
            for t in eog where Int(t) < v { logits.values[r * v + Int(t)] = -.infinity }
            return logits.values.withUnsafeBufferPointer { all in
                sampler.sample(logits: UnsafeBufferPointer(rebasing: all[(r * v)..<((r + 1) * v)]), history: generated)
            }
        }

        let prefillStart = MonotonicClock.now
        var logits = try model.forward(.sequential(prompt, startingAt: 0, lastLogitsOnly: true), cache: cache)
        var token = next(&logits)
        let prefillMs = MonotonicClock.millisecondsSince(prefillStart)
        generated.append(token)
        onFirstToken()

        var sampleNs: UInt64 = 0
        let cpuStart = ProcessResources.cpuMilliseconds
        let start = MonotonicClock.now
        for _ in 0..<steps {
            logits = try model.forward(.sequential([token], startingAt: cache.count), cache: cache)
            let t = MonotonicClock.now
            token = next(&logits)
            sampleNs += MonotonicClock.now - t
            generated.append(token)
        }
        let ms = MonotonicClock.millisecondsSince(start)
        let cpuMs = ProcessResources.cpuMilliseconds - cpuStart
        return DecodeRun(ms: ms, steps: steps, cpuMs: cpuMs, sampleMs: Double(sampleNs) / 1e6, prefillMs: prefillMs, generated: generated)
    }

    // MARK: - Prefill

    /// Wall time of reading `prompt` into an empty cache the way the engine reads prompts
    /// (`LanguageModel.prefill`): forward calls of `chunk` tokens (`chunk >= prompt.count`: one
    /// call), each computing its last token's logits only. The cache is emptied first and left
    /// holding the prompt.
    public func prefill(prompt: [Int32], chunk: Int, cache: any KVCache) throws(ModelError) -> Double {
        precondition(!prompt.isEmpty)
        cache.truncate(to: 0)
        let start = MonotonicClock.now
        try model.prefill(prompt, cache: cache, chunk: max(1, chunk))
        return MonotonicClock.millisecondsSince(start)
    }

    /// Whether the last prompt token's logits come out bit-identical when the prompt is read in
    /// calls of `chunk` tokens and when everything before it is read in one call and the last
    /// token alone (a decode step over the whole cache, which splits long attention lists across
    /// threads). Untimed; leaves the cache holding the prompt.
    public func prefillIsBatchInvariant(prompt: [Int32], chunk: Int, cache: any KVCache) throws(ModelError) -> Bool {
        precondition(prompt.count >= 2)
        cache.truncate(to: 0)
        let chunked = try model.prefill(prompt, cache: cache, chunk: max(1, chunk))
        cache.truncate(to: 0)
        let n = prompt.count - 1
        _ = try model.forward(.sequential(Array(prompt[0..<n]), startingAt: 0, lastLogitsOnly: true), cache: cache)
        let alone = try model.forward(.sequential([prompt[n]], startingAt: n), cache: cache)
        return chunked.map { Array($0.row($0.rowCount - 1)) } == Array(alone.row(0))
    }

    // MARK: - Batch scoring

    /// How the tokens of a scored batch see each other.
    public enum BatchShape: String, Codable, Sendable {
        /// A chain: token i sees tokens 0...i (ordinary prefill, a linear draft).
        case causal
        /// A balanced binary tree: node i's parent is (i - 1) / 2, node 0 a child of the
        /// context; positions are context + depth (a speculative draft tree).
        case tree
    }

    /// Which logits a scoring call computes.
    public enum LogitRows: String, Codable, Sendable {
        /// Every token's (what a speculative verifier needs).
        case all
        /// The last token's only (what llama.cpp's prompt processing computes).
        case last
    }

    /// The forward batch scoring `tokens` on top of a cache of `context` entries.
    public static func scoringBatch(_ tokens: [Int32], context: Int, shape: BatchShape, logits: LogitRows) -> ForwardBatch {
        let n = tokens.count
        let rows: [Int]? = logits == .all ? nil : [n - 1]
        switch shape {
        case .causal:
            return ForwardBatch(tokens: tokens, positions: (0..<n).map { Int32(context + $0) }, mask: .causal, logitIndices: rows)
        case .tree:
            let parents = (0..<n).map { $0 == 0 ? -1 : ($0 - 1) / 2 }
            var depth = [Int](repeating: 0, count: n)
            for i in 1..<max(n, 1) { depth[i] = depth[parents[i]] + 1 }
            return ForwardBatch(tokens: tokens, positions: depth.map { Int32(context + $0) },
                                mask: .tree(parents: parents), logitIndices: rows)
        }
    }

    /// Wall time of one forward call scoring `batch` on a cache holding exactly `context`
    /// entries; afterwards the cache is truncated back to `context`.
    public func score(_ batch: ForwardBatch, context: Int, cache: any KVCache) throws(ModelError) -> Double {
        precondition(cache.count == context, "the cache holds \(cache.count) entries, not the \(context)-token context")
        let start = MonotonicClock.now
        _ = try model.forward(batch, cache: cache)
        let ms = MonotonicClock.millisecondsSince(start)
        cache.truncate(to: context)
        return ms
    }

    // MARK: - Bytes per token

    /// Bytes of keys and values a one-token forward reads with `context` entries in the cache
    /// (F16 keys and values, every layer; sliding-window layers only their window).
    public static func kvBytesPerToken(_ c: ModelConfiguration, context: Int) -> Int {
        (0..<c.blockCount).reduce(0) { sum, l in
            let seen = c.isSlidingWindowLayer(l) ? min(context, c.slidingWindow) : context
            return sum + seen * (c.keyValueDimension + c.valueDimension) * 2
        }
    }
}

/// Runs `body` `warmup` times untimed, then `repeats` times, returning the timed results.
public func benchmarkRepeats<T>(warmup: Int, repeats: Int, _ body: (_ timed: Bool) throws -> T) rethrows -> [T] {
    for _ in 0..<max(0, warmup) { _ = try body(false) }
    var out: [T] = []
    out.reserveCapacity(repeats)
    for _ in 0..<max(0, repeats) { out.append(try body(true)) }
    return out
}
