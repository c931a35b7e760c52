import ArborEngine
import ArborModels
import ArborTokenizers

/// Which drafter proposes the trees: none (plain decoding), prompt lookup, the suffix tree, or a
/// draft model of the target's vocabulary.
public enum DrafterChoice: Sendable, Hashable, CustomStringConvertible {
    case none, ngram, suffix
    /// A draft model, by alias or GGUF path.
    case model(String)

    /// Parses `none`, `ngram`, `suffix`, `model` (with `draftModel`) or `model:<alias|path>`.
    public init(parsing text: String, draftModel: String? = nil) throws(RuntimeError) {
        switch text {
        case "none": self = .none
        case "ngram": self = .ngram
        case "suffix": self = .suffix
        case "model":
            guard let draftModel else { throw .noDraftModel }
            self = .model(draftModel)
        default:
            if text.hasPrefix("model:"), text.count > 6 { self = .model(String(text.dropFirst(6))); return }
            throw .unknownDrafter(text)
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .ngram: "ngram"
        case .suffix: "suffix"
        case let .model(name): "model:\(name)"
        }
    }

    /// A draft model costs real compute per drafted token (unlike the lookup drafters).
    public var isModel: Bool {
        if case .model = self { return true }
        return false
    }

    /// Builds the drafter for a target with `targetTokenizer` (nil for `none`). `loadModel` turns
    /// a draft model's name into a loaded bundle (already in memory when a remote target's client
    /// loaded it for its tokenizer).
    public func makeDrafter(targetTokenizer: any Tokenizer, targetName: String,
                            loadModel: (String) throws -> ModelBundle) throws -> (any Drafter)? {
        switch self {
        case .none: return nil
        case .ngram: return NGramDrafter()
        case .suffix: return SuffixDrafter()
        case let .model(name):
            let draft = try loadModel(name)
            return try ModelDrafter(model: draft.model, tokenizer: draft.tokenizer, name: name,
                                    targetTokenizer: targetTokenizer, targetName: targetName)
        }
    }
}
