import ArborEngine
import ArborProfiles
import Foundation

/// Cheap facts about a prompt that predict which drafter pays: how much it repeats itself
/// (prompt lookup and the suffix tree live on repetition), whether it is code, and its length.
public struct PromptFeatures: Sendable, Equatable {
    /// Share of the prompt's token 3-grams seen earlier in the prompt (0…1).
    public var repetition: Double
    /// Share of the text's characters that are code punctuation (`{}[]();=<>_#:`), or 1 with a fence.
    public var codeScore: Double
    public var tokens: Int

    public init(tokens: [Int32], text: String) {
        self.tokens = tokens.count
        var seen = Set<UInt64>()
        var repeated = 0, total = 0
        if tokens.count >= 3 {
            for i in 2..<tokens.count {
                let key = UInt64(UInt32(bitPattern: tokens[i - 2])) << 42 ^ UInt64(UInt32(bitPattern: tokens[i - 1])) << 21 ^ UInt64(UInt32(bitPattern: tokens[i]))
                total += 1
                if !seen.insert(key).inserted { repeated += 1 }
            }
        }
        repetition = total > 0 ? Double(repeated) / Double(total) : 0
        let punctuation = Set("{}[]();=<>_#:")
        let chars = text.unicodeScalars.count
        let code = text.reduce(0) { $0 + (punctuation.contains($1) ? 1 : 0) }
        codeScore = text.contains("```") || text.contains("def ") ? 1 : chars > 0 ? Double(code) / Double(chars) * 10 : 0
    }

    /// The bucket the router keeps statistics per: repetition high/low, code/prose, short/long.
    public var bucket: String {
        [repetition >= 0.08 ? "repeats" : "fresh", codeScore >= 0.5 ? "code" : "prose", tokens >= 256 ? "long" : "short"].joined(separator: "-")
    }
}

/// `--drafter auto`: picks the drafter of each request from its prompt's bucket and what every
/// drafter delivered there before (tokens/s), an upper-confidence-bound bandit whose statistics
/// persist in the profile database, so it keeps learning across requests and processes.
///
/// Why a bandit and not SpecDecode's offline classifier (an MLP over sentence embeddings): it
/// needs no training data or embedding model, it measures the quantity that matters on this
/// machine (tokens/s, not a proxy), and it adapts when the hardware, the target or the workload
/// change. Buckets keep it from averaging code and chat into one verdict; a handful of requests
/// per bucket and drafter is enough to rank them.
public final class DrafterRouter: @unchecked Sendable {
    /// The drafters it chooses among, in the order untried ones are tried.
    public let candidates: [DrafterChoice]
    /// Exploration weight: the bonus is `exploration · mean · sqrt(ln N / n)`, relative to speed.
    public var exploration = 0.25
    private var arms: [String: [String: RouterArmRecord]] = [:]
    private let lock = NSLock()
    private let store: ProfileStore?
    private let scope: String
    private let warn: @Sendable (String) -> Void

    public init(candidates: [DrafterChoice], store: ProfileStore?, scope: String, warn: @escaping @Sendable (String) -> Void = { _ in }) {
        precondition(!candidates.isEmpty, "the router needs at least one drafter")
        self.candidates = candidates
        self.store = store
        self.scope = scope
        self.warn = warn
        do {
            for r in try store?.routerArms(scope: scope) ?? [] { arms[r.bucket, default: [:]][r.arm] = r }
        } catch {
            warn("router: could not read its statistics (\(error)); starting afresh")
        }
    }

    /// The statistics of a bucket, by drafter name.
    public func statistics(bucket: String) -> [String: RouterArmRecord] { lock.withLock { arms[bucket] ?? [:] } }

    /// The drafter for a prompt with `features`.
    public func choose(_ features: PromptFeatures) -> DrafterChoice {
        let (stats, overall) = lock.withLock { (arms[features.bucket] ?? [:], totals()) }
        // A drafter never measured anywhere is tried first (the likeliest for the bucket first).
        if let untried = prior(features).first(where: { overall[$0.description] == nil }) { return untried }
        // Otherwise each drafter's estimate in this bucket starts from its mean over all buckets
        // (as one observation) and moves to the bucket's own as requests there are measured: a
        // new bucket starts with the drafter that does best overall instead of trying them all.
        let total = Double(stats.values.reduce(0) { $0 + $1.count })
        func score(_ c: DrafterChoice) -> Double {
            let n = Double(stats[c.description]?.count ?? 0)
            return Self.estimate(c, local: stats, overall: overall)! * (1 + exploration * (log(total + 1) / (n + 1)).squareRoot())
        }
        return candidates.max { score($0) < score($1) }!
    }

    /// How many requests of evidence a drafter's mean over all buckets is worth in a bucket.
    static let priorWeight = 1.0

    /// Every drafter's statistics pooled over all buckets (call with the lock held).
    private func totals() -> [String: RouterArmRecord] {
        var out: [String: RouterArmRecord] = [:]
        for bucket in arms.values {
            for (name, r) in bucket {
                var t = out[name] ?? RouterArmRecord(bucket: "*", arm: name)
                // Pooled mean, weighted by counts (m2 is not needed here).
                let n = t.count + r.count
                t.mean = (t.mean * Double(t.count) + r.mean * Double(r.count)) / Double(n)
                t.count = n
                out[name] = t
            }
        }
        return out
    }

    /// Candidates in the order to try them when nothing is known: free drafters first where
    /// the prompt repeats itself, the draft model first on fresh prose.
    func prior(_ f: PromptFeatures) -> [DrafterChoice] {
        func rank(_ c: DrafterChoice) -> Int {
            switch c {
            case .suffix: f.repetition >= 0.08 || f.codeScore >= 0.5 ? 0 : 2
            case .ngram: 1
            case .model, .cross, .composite: f.repetition >= 0.08 ? 2 : 0
            case .none: 3
            case .auto: 4
            }
        }
        return candidates.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
    }

    /// Records what `choice` delivered on a prompt with `features` and saves it.
    public func record(_ choice: DrafterChoice, features: PromptFeatures, tokensPerSecond: Double) {
        guard tokensPerSecond.isFinite, tokensPerSecond > 0 else { return }
        let bucket = features.bucket, name = choice.description
        let updated = lock.withLock {
            var r = arms[bucket]?[name] ?? RouterArmRecord(bucket: bucket, arm: name)
            r.add(tokensPerSecond)
            arms[bucket, default: [:]][name] = r
            return r
        }
        do {
            try store?.saveRouterArm(scope: scope, updated)
        } catch {
            warn("router: could not save its statistics (\(error))")
        }
    }
}

extension DrafterRouter {
    /// The estimated tokens/s of `choice` in `features`' bucket, as `choose` estimates it (its
    /// mean there blended with its mean over all buckets); 0 when it was never measured.
    public func estimate(_ choice: DrafterChoice, _ features: PromptFeatures) -> Double {
        let (stats, overall) = lock.withLock { (arms[features.bucket] ?? [:], totals()) }
        return Self.estimate(choice, local: stats, overall: overall) ?? 0
    }

    private static func estimate(_ c: DrafterChoice, local stats: [String: RouterArmRecord], overall: [String: RouterArmRecord]) -> Double? {
        guard let global = overall[c.description] else { return nil }
        let local = stats[c.description]
        let n = Double(local?.count ?? 0)
        return (n * (local?.mean ?? 0) + priorWeight * global.mean) / (n + priorWeight)
    }

    /// The candidate other than `choice` with the best estimate for `features`' bucket, with that
    /// estimate, if any other candidate has been measured anywhere.
    public func bestAlternative(to choice: DrafterChoice, _ features: PromptFeatures) -> (choice: DrafterChoice, tokensPerSecond: Double)? {
        let (stats, overall) = lock.withLock { (arms[features.bucket] ?? [:], totals()) }
        return candidates.filter { $0 != choice }
            .compactMap { c in Self.estimate(c, local: stats, overall: overall).map { (c, $0) } }
            .max { $0.1 < $1.1 }
    }
}

/// The drafter of an `auto` request the router explores with: its pick (`primary`; nil for
/// plain decoding, which then runs through the speculative loop with no drafts so that it can be
/// watched too), watched as the request runs. When, after `minimumTokens`, it has delivered
/// clearly less than the bucket's best alternative is estimated to (`switchBelow` of its
/// tokens/s), the rest of the request drafts with that alternative. One switch at most: a
/// request is too short to learn more, and the router learns across requests. This bounds what
/// exploring costs: a drafter tried where it does badly costs a few rounds, not the request.
///
/// It sees only what every drafter sees: each round's context, whose growth is the tokens the
/// round committed, and the clock between rounds. Verification does not depend on who drafted,
/// so switching keeps the output exactly the target's.
public final class RoutedDrafter: Drafter {
    public let primary: (any Drafter)?
    public let fallback: (any Drafter)?
    public let fallbackChoice: DrafterChoice
    /// Tokens/s the fallback is estimated to deliver in this bucket.
    public let fallbackRate: Double
    /// Committed tokens before the pick is judged, once: enough that one slow start does not
    /// condemn a good pick, few enough that a bad one costs a second or so.
    public var minimumTokens = 24
    public var switchBelow = 0.75
    public private(set) var switched = false
    /// What the pick delivered until the switch, and the fallback after it (tokens/s), when it switched.
    public private(set) var rateBeforeSwitch: Double?
    public private(set) var rateAfterSwitch: Double?
    private var judged = false
    private var startCount = 0
    private var start: UInt64 = 0
    private var switchCount = 0
    private var switchTime: UInt64 = 0
    private var sampling = SamplingParameters.greedy

    public init(primary: (any Drafter)?, fallback: (any Drafter)?, fallbackChoice: DrafterChoice, fallbackRate: Double) {
        self.primary = primary
        self.fallback = fallback
        self.fallbackChoice = fallbackChoice
        self.fallbackRate = fallbackRate
    }

    /// The primary's name: the request is counted, and its policy kept, under the router's pick.
    public var name: String { primary?.name ?? "none" }
    public var costsTimePerStep: Bool { primary?.costsTimePerStep ?? false }
    /// Only when a switch could not bring in a drafter that would draft every allowed level in
    /// full at a cost.
    public var deepens: Bool {
        guard primary?.deepens == true else { return false }
        guard let fallback else { return true }
        return fallback.deepens || !fallback.costsTimePerStep
    }
    var current: (any Drafter)? { switched ? fallback : primary }

    public func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        switched = false
        judged = false
        rateBeforeSwitch = nil
        rateAfterSwitch = nil
        self.sampling = sampling
        startCount = prompt.count
        try primary?.begin(prompt: prompt, sampling: sampling)
        // Decoding starts now: the draft model's read of the prompt is prefill, as in the
        // request's own tokens/s that the router records.
        start = MonotonicClock.now
    }

    public func draft(context: [Int32], budget: DraftBudget) throws -> Draft {
        try judge(context)
        guard let current else { return Draft() }
        return try current.draft(context: context, budget: budget)
    }

    public func catchUp(context: [Int32]) throws {
        try judge(context)
        try current?.catchUp(context: context)
    }

    /// Switches to the fallback once the pick has had `minimumTokens` and lags.
    private func judge(_ context: [Int32]) throws {
        let committed = context.count - startCount
        guard !judged, committed >= minimumTokens else { return }
        // Judged once: a pick that keeps up now keeps the request.
        judged = true
        let seconds = MonotonicClock.millisecondsSince(start) / 1000
        let rate = seconds > 0 ? Double(committed) / seconds : .infinity
        guard rate < switchBelow * fallbackRate else { return }
        switched = true
        rateBeforeSwitch = rate
        // The fallback reads the request so far (a suffix index, a draft model's cache); that
        // reading is on its clock.
        switchTime = MonotonicClock.now
        switchCount = context.count
        try fallback?.begin(prompt: context, sampling: sampling)
    }

    public func end(context: [Int32], promptCount: Int) {
        primary?.end(context: context, promptCount: promptCount)
        guard switched else { return }
        let seconds = MonotonicClock.millisecondsSince(switchTime) / 1000
        if context.count - switchCount >= minimumTokens, seconds > 0 { rateAfterSwitch = Double(context.count - switchCount) / seconds }
        fallback?.end(context: context, promptCount: promptCount)
    }
}
