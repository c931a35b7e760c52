import ArborModels
import ArborTokenizers

/// Drafts with a model whose tokenizer is not the target's (OmniDraft's setting): SmolLM2 or
/// Gemma drafting for Qwen.
///
/// The two models meet in *text*. The drafter keeps its own tokenization of the committed text
/// and continues it greedily in its own tokens; the continuation's text is then tokenized with
/// the target's tokenizer and proposed as a chain of target tokens. Losslessness does not depend
/// on any of this: every proposed token is verified by the target like any other draft, as a
/// point mass (the proposal is deterministic), so greedy output equals plain greedy output and
/// sampled output follows the target's distribution.
///
/// Where the two tokenizations can disagree, the drafter stays on the safe side:
/// - **The end of a draft.** The last target token of the continuation may be a prefix of a
///   longer token the target would produce once more text follows (" hel" before "lo"), so it
///   is dropped unless the draft ended with an end-of-generation token. Bytes of an unfinished
///   character are never tokenized.
/// - **The committed text.** New committed text is tokenized together with the last two draft
///   tokens before it (a word the target split may be one draft token), and the draft cache keeps
///   every slot up to the first token that changed: accepted drafted tokens are not recomputed.
///
/// Translations of drafted continuations into target tokens are cached (OmniDraft's online
/// cache): a continuation drafted again after a rejection or a run-ahead costs no tokenizer work.
public final class CrossVocabularyDrafter: Drafter {
    public let model: any LanguageModel
    public let name: String
    public var costsTimePerStep: Bool { true }

    private let draftTokenizer: any Tokenizer
    private let targetTokenizer: any Tokenizer

    private var cache: (any KVCache)?
    /// Draft tokens whose keys and values the cache holds, in its slots (the committed text's
    /// tokenization, then possibly the last draft's tokens).
    private var cachedTokens: [Int32] = []
    /// The draft tokenization of the committed text, and the byte offset where each token ends.
    private var draftContext: [Int32] = []
    private var draftEnds: [Int] = []
    /// The committed text (control tokens as their text), and how many target tokens it holds.
    private var committedBytes: [UInt8] = []
    private var committedTargets: [Int32] = []
    /// Bytes at the end of `committedBytes` that do not form a whole character yet (not
    /// tokenized for the draft until they do).
    private var heldBytes = 0
    private var scratch: [Float] = []
    private var lastSteps = 0
    /// Committed target tokens at the end of the last draft, and its depth (to tell drafting's
    /// own feed from catching up after rounds without drafting).
    private var lastContextCount = 0
    private var lastDepth = 0

    /// Draft continuations (as draft token ids) and their target tokens.
    private var translations: [[Int32]: [Int32]] = [:]
    private static let translationLimit = 8_192
    /// Translations served from the cache, and computed.
    public private(set) var translationHits = 0
    public private(set) var translationMisses = 0

    /// Wraps `model` (with its own `tokenizer`) as a drafter for a target using `targetTokenizer`.
    public init(model: any LanguageModel, tokenizer: any Tokenizer, name: String, targetTokenizer: any Tokenizer) {
        self.model = model
        self.draftTokenizer = tokenizer
        self.targetTokenizer = targetTokenizer
        self.name = "cross:\(name)"
    }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        cache = model.makeCache(capacity: prompt.count * 2 + 256)
        cachedTokens = []
        draftContext = []
        draftEnds = []
        committedBytes = []
        committedTargets = []
        heldBytes = 0
        sync(context: prompt)
        // Read all but the last draft token now (charged to prefill, not to drafting). A prompt
        // longer than the draft model's context is not drafted for at all.
        if let cache, draftContext.count > 1, fits(extra: 0) {
            let body = draftContext.dropLast()
            _ = try model.prefill(body, cache: cache)
            cachedTokens = Array(body)
        }
        lastContextCount = prompt.count
        lastDepth = 0
    }

    public func end(context: [Int32], promptCount: Int) {
        cache = nil
        cachedTokens = []
        draftContext = []
        draftEnds = []
        committedBytes = []
        committedTargets = []
    }

    public func catchUp(context: [Int32]) throws {
        guard let cache else { return }
        sync(context: context)
        if heldBytes == 0, !draftContext.isEmpty, fits(extra: 0) { _ = try feedContext(cache: cache) }
        lastContextCount = context.count
        lastDepth = 0
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        lastSteps = 0
        guard let cache, budget.maxNodes > 0, budget.maxDepth > 0, !context.isEmpty else { return Draft() }
        let start = MonotonicClock.now
        let lagging = context.count - lastContextCount > lastDepth + 1
        sync(context: context)
        // An unfinished character at the end of the text: its continuation is not text yet. Near
        // the end of the draft model's context (its tokens are usually more numerous than the
        // target's) drafting stops rather than fail the generation.
        guard heldBytes == 0, !draftContext.isEmpty, fits(extra: 2 * min(budget.maxDepth, budget.maxNodes) + 2) else { return Draft() }
        var logits = try feedContext(cache: cache)
        let catchUpMilliseconds = lagging ? MonotonicClock.millisecondsSince(start) : 0
        lastSteps = 1
        let depth = min(budget.maxDepth, budget.maxNodes)
        lastContextCount = context.count
        lastDepth = depth

        // Greedy draft tokens until their text holds depth + 1 target tokens (the last is
        // dropped), or an end-of-generation token, or a step limit (draft tokens are usually
        // shorter than the target's).
        var drafted: [Int32] = []
        var probabilities: [Float] = []
        var translated: [Int32] = []
        var ended = false
        let stepLimit = 2 * depth + 2
        while drafted.count < stepLimit {
            guard let (token, p) = ModelDrafter.topK(logits[...], k: 1, scratch: &scratch).first else { break }
            drafted.append(token)
            probabilities.append(p)
            if draftTokenizer.isEndOfGeneration(token) { ended = true }
            translated = translate(drafted)
            if ended || translated.count > depth { break }
            let out = try model.forward(.sequential([token], startingAt: cache.count, lastLogitsOnly: true), cache: cache)
            cachedTokens.append(token)
            lastSteps += 1
            logits = Array(out.row(0))
        }
        var keep = ended ? translated.count : translated.count - 1
        keep = min(max(keep, 0), depth)
        guard keep > 0 else { return Draft(cost: DraftCost(catchUpMilliseconds: catchUpMilliseconds, steps: lastSteps)) }

        // Each draft token's probability goes to the target token its last byte falls in.
        let draftEndOffsets = drafted.map { draftTokenizer.pieceBytes($0, renderSpecial: true).count }.runningSums()
        let targetEndOffsets = translated.map { targetTokenizer.pieceBytes($0, renderSpecial: true).count }.runningSums()
        var confidences = [Float](repeating: 1, count: keep)
        var j = 0
        for (k, end) in draftEndOffsets.enumerated() {
            while j < keep, targetEndOffsets[j] < end { j += 1 }
            guard j < keep else { break }
            confidences[j] *= probabilities[k]
        }
        let tree = TokenTree(chain: Array(translated.prefix(keep)), confidences: confidences)
        return Draft(tree: tree, cost: DraftCost(catchUpMilliseconds: catchUpMilliseconds, steps: lastSteps))
    }

    /// Whether the draft context plus `extra` drafted tokens fits the draft model's context.
    private func fits(extra: Int) -> Bool {
        draftContext.count + extra <= model.configuration.contextLength
    }

    // MARK: Text

    /// Extends the committed text with the target tokens of `context` not seen yet and
    /// re-tokenizes its end for the draft. A context that is not an extension of what was seen
    /// (never within a request) starts over.
    private func sync(context: [Int32]) {
        var same = 0
        while same < committedTargets.count, same < context.count, committedTargets[same] == context[same] { same += 1 }
        if same < committedTargets.count {
            committedBytes = []
            committedTargets = []
            draftContext = []
            draftEnds = []
        }
        guard committedTargets.count < context.count else { return }
        for t in context[committedTargets.count...] where t != targetTokenizer.bosToken {
            committedBytes += targetTokenizer.pieceBytes(t, renderSpecial: true)
        }
        committedTargets = context
        heldBytes = StreamingDetokenizer.incompleteSuffixLength(committedBytes)
        let complete = committedBytes.count - heldBytes
        if draftContext.isEmpty, draftTokenizer.addBOS, let bos = draftTokenizer.bosToken {
            draftContext = [bos]
            draftEnds = [0]
        }
        let first = draftEnds.first == 0 && draftContext.first == draftTokenizer.bosToken ? 1 : 0

        // Re-tokenize from the start of the second-to-last draft token (the BOS stays).
        let redo = max(first, draftContext.count - 2)
        let from = redo == 0 ? 0 : draftEnds[redo - 1]
        guard complete > from else { return }
        let tail = draftTokenizer.encode(String(decoding: committedBytes[from..<complete], as: UTF8.self),
                                         addSpecial: false, parseSpecial: true)
        draftContext.removeLast(draftContext.count - redo)
        draftEnds.removeLast(draftEnds.count - redo)
        var end = from
        for t in tail {
            end += draftTokenizer.pieceBytes(t, renderSpecial: true).count
            draftContext.append(t)
            draftEnds.append(end)
        }
        // A tokenizer that rewrites text (a space prefix, normalisation) breaks the byte offsets:
        // clamp them so that the next re-tokenization starts inside the text. The draft's view
        // may then differ a little from its own tokenization, which costs acceptance, not output.
        if end != complete, !draftEnds.isEmpty {
            draftEnds = draftEnds.map { min($0, complete) }
            draftEnds[draftEnds.count - 1] = complete
        }
    }

    /// Brings the cache to exactly `draftContext` and returns the logits after its last token.
    /// Slots up to the first changed token are kept: drafted tokens that were committed as the
    /// same draft tokens are not fed again.
    private func feedContext(cache: any KVCache) throws -> [Float] {
        var keep = 0
        while keep < cachedTokens.count, keep < draftContext.count, cachedTokens[keep] == draftContext[keep] { keep += 1 }
        // The last token is fed again when nothing is missing: its logits are needed.
        keep = min(keep, draftContext.count - 1)
        cache.truncate(to: keep)
        cachedTokens.removeLast(cachedTokens.count - keep)
        let missing = Array(draftContext[keep...])
        let logits = try model.forward(.sequential(missing, startingAt: cache.count, lastLogitsOnly: true), cache: cache)
        cachedTokens = draftContext
        return Array(logits.row(0))
    }

    /// The target tokens of a drafted continuation's text (whole characters only).
    private func translate(_ drafted: [Int32]) -> [Int32] {
        if let hit = translations[drafted] {
            translationHits += 1
            return hit
        }
        translationMisses += 1
        var bytes: [UInt8] = []
        for t in drafted { bytes += draftTokenizer.pieceBytes(t, renderSpecial: true) }
        bytes.removeLast(StreamingDetokenizer.incompleteSuffixLength(bytes))
        let out = bytes.isEmpty ? [] : targetTokenizer.encode(String(decoding: bytes, as: UTF8.self), addSpecial: false, parseSpecial: true)
        if translations.count >= Self.translationLimit { translations.removeAll(keepingCapacity: true) }
        translations[drafted] = out
        return out
    }
}

extension Array where Element == Int {
    /// Running sums: `[a, a + b, a + b + c, …]`.
    fileprivate func runningSums() -> [Int] {
        var total = 0
        return map { total += $0; return total }
    }
}
