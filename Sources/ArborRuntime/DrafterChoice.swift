import ArborEngine
import ArborModels
import ArborTokenizers

/// Which drafter proposes the trees: none (plain decoding), prompt lookup, the suffix tree, a
/// draft model of the target's vocabulary, or a draft model of another vocabulary (through text).
public enum DrafterChoice: Sendable, Hashable, CustomStringConvertible {
    case none, ngram, suffix
    /// A draft model, by alias or GGUF path.
    case model(String)
    /// A draft model of another vocabulary (`CrossVocabularyDrafter`), by alias or GGUF path.
    case cross(String)
    /// Several drafters whose trees are merged (`CompositeDrafter`): the free ones every round,
    /// a draft model when they leave the round short.
    case composite([DrafterChoice])
    /// The router picks one of the runtime's drafters per request (`DrafterRouter`).
    case auto

    /// Parses `auto`, `none`, `ngram`, `suffix`, `model` or `cross` (with `draftModel`), `model:<alias|path>`
    /// or `cross:<alias|path>`, or several of those joined by `+` (`suffix+cross`).
    public init(parsing text: String, draftModel: String? = nil) throws(RuntimeError) {
        if text.contains("+") {
            let names = text.split(separator: "+", omittingEmptySubsequences: false)
            guard names.count >= 2, !names.contains(where: { $0.isEmpty || $0 == "none" || $0 == "auto" || $0.contains("+") }) else { throw .unknownDrafter(text) }
            let parts = try names.map { name throws(RuntimeError) in try DrafterChoice(parsing: String(name), draftModel: draftModel) }
            self = .composite(parts)
            return
        }
        switch text {
        case "none": self = .none
        case "auto": self = .auto
        case "ngram": self = .ngram
        case "suffix": self = .suffix
        case "model":
            guard let draftModel else { throw .noDraftModel }
            self = .model(draftModel)
        case "cross":
            guard let draftModel else { throw .noDraftModel }
            self = .cross(draftModel)
        default:
            if text.hasPrefix("model:"), text.count > 6 { self = .model(String(text.dropFirst(6))); return }
            if text.hasPrefix("cross:"), text.count > 6 { self = .cross(String(text.dropFirst(6))); return }
            throw .unknownDrafter(text)
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .ngram: "ngram"
        case .suffix: "suffix"
        case let .model(name): "model:\(name)"
        case let .cross(name): "cross:\(name)"
        case let .composite(parts): parts.map(\.description).joined(separator: "+")
        case .auto: "auto"
        }
    }

    /// A draft model costs real compute per drafted token (unlike the lookup drafters).
    public var isModel: Bool {
        switch self {
        case .model, .cross: true
        case let .composite(parts): parts.contains(where: \.isModel)
        default: false
        }
    }

    /// Whether a draft model of another vocabulary drafts (then a remote target's tokenizer comes
    /// from the target's file, not from the draft model).
    public var usesCrossVocabulary: Bool {
        switch self {
        case .cross: true
        case let .composite(parts): parts.contains(where: \.usesCrossVocabulary)
        default: false
        }
    }

    /// The draft model a model drafter runs, if any (the first, for a composite).
    public var draftModel: String? { draftModels.first }

    /// Every draft model this choice runs.
    public var draftModels: [String] {
        switch self {
        case let .model(name), let .cross(name): [name]
        case let .composite(parts): parts.flatMap(\.draftModels)
        default: []
        }
    }

    /// Builds the drafter for a target with `targetTokenizer` (nil for `none`). `loadModel` turns
    /// a draft model's name into a loaded bundle (already in memory when a remote target's client
    /// loaded it for its tokenizer). `trimHead`, when given, turns a same-vocabulary draft model
    /// into one whose head scores fewer tokens (VocabTrim); the drafter's name then says how many.
    public func makeDrafter(targetTokenizer: any Tokenizer, targetName: String,
                            loadModel: (String) throws -> ModelBundle,
                            trimHead: ((ModelBundle) throws -> DecoderModel)? = nil) throws -> (any Drafter)? {
        switch self {
        case .none, .auto: return nil  // the runtime resolves `auto` to a concrete choice first
        case .ngram: return NGramDrafter()
        case .suffix: return SuffixDrafter()
        case let .model(name):
            let draft = try loadModel(name)
            // The drafter checks that the draft shares the target's vocabulary (a trimmed copy keeps its tokenizer).
            let trimmed = try trimHead?(draft)
            return try ModelDrafter(model: trimmed ?? draft.model, tokenizer: draft.tokenizer,
                                    name: trimmed.map { "\(name)@\($0.outputTokens?.count ?? 0)" } ?? name,
                                    targetTokenizer: targetTokenizer, targetName: targetName)
        case let .cross(name):
            let draft = try loadModel(name)
            return CrossVocabularyDrafter(model: draft.model, tokenizer: draft.tokenizer, name: name, targetTokenizer: targetTokenizer)
        case let .composite(parts):
            let drafters = try parts.compactMap {
                try $0.makeDrafter(targetTokenizer: targetTokenizer, targetName: targetName, loadModel: loadModel, trimHead: trimHead)
            }
            return CompositeDrafter(drafters)
        }
    }
}
