import ArborEngine
import ArborModels
import ArborProfiles
import ArborTokenizers

/// VocabTrim: a draft model whose output head scores only the tokens the target most often
/// produces. A small draft model spends a large share of each step on its head (the 0.5B
/// Qwen's is 151,936 rows); proposals outside the kept set would rarely be accepted anyway.
///
/// The counts live in the profile database (`token_count`, keyed by the target vocabulary's
/// fingerprint), built by `arbor profile vocab` from the target's own outputs and added to as
/// generations finish; nothing is committed to the repository.
public enum VocabTrim {
    /// The key of a vocabulary's counts: its fingerprint, in hex.
    public static func vocabularyKey(_ tokenizer: any Tokenizer) -> String {
        String(tokenizer.vocabularyFingerprint, radix: 16)
    }

    /// The `keep` most frequent tokens of `counts`, plus every end-of-generation token (a draft
    /// that can never propose the end keeps drafting past it).
    public static func keptTokens(counts: [(token: Int32, count: Int)], keep: Int, tokenizer: any Tokenizer) -> [Int32] {
        var kept = Set(counts.prefix(keep).map(\.token).filter { Int($0) < tokenizer.vocabularySize })
        kept.formUnion(tokenizer.endOfGenerationTokens)
        return kept.sorted()
    }

    /// The share of all counted occurrences that the `keep` most frequent tokens cover.
    public static func coverage(counts: [(token: Int32, count: Int)], keep: Int) -> Double {
        let total = counts.reduce(0) { $0 + $1.count }
        guard total > 0 else { return 0 }
        return Double(counts.prefix(keep).reduce(0) { $0 + $1.count }) / Double(total)
    }

    /// `draft`'s model with its head trimmed to the `keep` tokens the store counted most often
    /// for `targetTokenizer`'s vocabulary (the draft shares that vocabulary).
    public static func trimmedDraft(_ draft: ModelBundle, keep: Int, targetTokenizer: any Tokenizer,
                                    store: ProfileStore) throws -> DecoderModel {
        let key = vocabularyKey(targetTokenizer)
        let counts = try store.tokenCounts(vocabulary: key)
        guard !counts.isEmpty else { throw VocabTrimError.noCounts(database: store.path) }
        return try draft.model.trimmingOutput(to: keptTokens(counts: counts, keep: keep, tokenizer: draft.tokenizer))
    }
}

/// Why a trimmed draft head could not be built.
public enum VocabTrimError: Error, CustomStringConvertible, Equatable {
    case noCounts(database: String)

    public var description: String {
        switch self {
        case let .noCounts(path):
            "no token counts for the target's vocabulary in \(path): run `arbor profile vocab` first to count what the target produces"
        }
    }
}
