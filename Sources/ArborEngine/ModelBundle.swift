import ArborGGUF
import ArborModels
import ArborTokenizers

/// A model file loaded for use: the network, its tokenizer and its chat format.
public struct ModelBundle: @unchecked Sendable {
    public let path: String
    public let file: GGUFFile
    public let model: DecoderModel
    public let tokenizer: any Tokenizer
    /// The chat format, or the reason there is none (then only raw prompts work).
    public let chatTemplate: Result<ChatTemplate, ChatTemplateError>

    /// Open `path`, build the model and its tokenizer.
    public static func load(path: String, threads: Int = ModelRegistry.defaultThreadCount) throws -> ModelBundle {
        let file = try GGUFFile(path: path)
        let model = try ModelRegistry.load(file, threads: threads)
        let tokenizer = try makeTokenizer(file)
        let templateText = try file.string(.chatTemplate)
        let template: Result<ChatTemplate, ChatTemplateError>
        if templateText == nil && file.architecture == "gemma3" {
            // Gemma files often carry no template; Gemma's turn format is the only one it knows.
            template = .success(.gemma)
        } else {
            template = Result { () throws(ChatTemplateError) in try ChatTemplate.detect(from: templateText) }
        }
        return ModelBundle(path: path, file: file, model: model, tokenizer: tokenizer, chatTemplate: template)
    }

    /// Token ids for a chat: rendered with the model's template, special tokens parsed.
    public func chatTokens(_ messages: [ChatMessage]) throws -> [Int32] {
        let text = try chatTemplate.get().render(messages, addGenerationPrompt: true)
        return tokenizer.encode(text, addSpecial: true, parseSpecial: true)
    }

    /// Token ids for a raw prompt (BOS added when the model wants it, special text parsed).
    public func promptTokens(_ text: String) -> [Int32] {
        tokenizer.encode(text, addSpecial: true, parseSpecial: true)
    }
}
