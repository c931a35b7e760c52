/// Why a runtime could not be composed or a request could not run, in words a user can act on.
public enum RuntimeError: Error, CustomStringConvertible, Equatable {
    case unknownDrafter(String)
    case noDraftModel
    /// A draft model was asked for that this runtime was not started with.
    case draftModelNotLoaded(String, available: [String])
    case cancelled
    /// `draftVocabulary` reads VocabTrim's counts from the profile database, which is off or unreadable.
    case draftVocabularyNeedsProfiles

    public var description: String {
        switch self {
        case let .unknownDrafter(s): "unknown drafter '\(s)' (none, ngram, suffix, model, cross, model:<alias|path>, cross:<alias|path>, or several joined by '+', e.g. suffix+cross)"
        case .noDraftModel: "the model and cross drafters need a draft model (--draft <alias|path>)"
        case let .draftModelNotLoaded(name, available):
            "draft model '\(name)' is not available here" + (available.isEmpty ? " (none was loaded: start with --draft)" : " (available: \(available.joined(separator: ", ")))")
        case .cancelled: "the request was cancelled"
        case .draftVocabularyNeedsProfiles:
            "--draft-vocab reads the target's token counts from the profile database, which is switched off (--no-profile) or could not be opened"
        }
    }
}
