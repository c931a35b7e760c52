/// One message of a chat.
public struct ChatMessage: Codable, Sendable, Equatable {
    /// "system", "user" or "assistant" (other roles are rendered as given).
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Why a model's chat template cannot be used.
public enum ChatTemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The model has no `tokenizer.chat_template`.
    case missingTemplate
    /// The template is not one Arbor can render; `excerpt` is its beginning.
    case unknownTemplate(excerpt: String)

    public var description: String {
        switch self {
        case .missingTemplate:
            "the model has no chat template (tokenizer.chat_template); pass a raw prompt instead of chat messages"
        case let .unknownTemplate(excerpt):
            "unknown chat template (Arbor renders ChatML and Gemma turns only); pass a raw prompt instead of chat messages. Template begins: \(excerpt.debugDescription)"
        }
    }
}

/// The chat formats Arbor renders natively, each reproducing what the model's Jinja template
/// renders (checked against the reference engine's `/apply-template`).
public enum ChatTemplate: Sendable, Equatable {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message (Qwen2.5, SmolLM2). When the first
    /// message is not a system message and `defaultSystemPrompt` is set, a system turn with it
    /// comes first, as both models' templates do. Content is not trimmed.
    case chatML(defaultSystemPrompt: String?)
    /// `<start_of_turn>{user|model}\n{content}<end_of_turn>\n` (Gemma 3). A first system message
    /// becomes a prefix of the first turn (`{system}\n\n`); content is trimmed of ASCII
    /// whitespace. BOS is not written: the tokenizer adds it.
    case gemma

    /// Qwen2.5's template.
    public static let qwen2 = ChatTemplate.chatML(
        defaultSystemPrompt: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    /// SmolLM2's template.
    public static let smolLM2 = ChatTemplate.chatML(
        defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face")

    /// The format of a model's `tokenizer.chat_template`.
    ///
    /// ChatML templates are recognised by `<|im_start|>`, their default system prompt read from
    /// the literal `'<|im_start|>system\n...<|im_end|>'` they emit when none is given; Gemma
    /// templates by `<start_of_turn>`. Anything else is `unknownTemplate`.
    public static func detect(from templateString: String?) throws(ChatTemplateError) -> ChatTemplate {
        guard let template = templateString, !template.allSatisfy(\.isWhitespace) else { throw .missingTemplate }
        if template.contains("<start_of_turn>") && template.contains("<end_of_turn>") {
            return .gemma
        }
        if template.contains("<|im_start|>") && template.contains("<|im_end|>") {
            return .chatML(defaultSystemPrompt: defaultSystemPrompt(in: template))
        }
        throw .unknownTemplate(excerpt: String(template.prefix(120)))
    }

    /// The text of a chat, ready to tokenize with special tokens parsed.
    /// - Parameter addGenerationPrompt: end with the opening of an assistant turn.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        var out = ""
        switch self {
        case let .chatML(defaultSystem):
            if let defaultSystem, let first = messages.first, first.role != "system" {
                out += "<|im_start|>system\n" + defaultSystem + "<|im_end|>\n"
            }
            for m in messages {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }

        case .gemma:
            var prefix = ""
            var turns = messages[...]
            if let first = messages.first, first.role == "system" {
                prefix = first.content + "\n\n"
                turns = messages.dropFirst()
            }
            for (i, m) in turns.enumerated() {
                let role = m.role == "assistant" ? "model" : m.role
                out += "<start_of_turn>" + role + "\n" + (i == 0 ? prefix : "")
                out += Self.trimASCIIWhitespace(m.content) + "<end_of_turn>\n"
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        }
        return out
    }

    /// Jinja's `trim` as the reference renders it: spaces, tabs, line feeds, carriage returns,
    /// vertical tabs and form feeds at both ends.
    static func trimASCIIWhitespace(_ s: String) -> String {
        let scalars = s.unicodeScalars
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || (c.value >= 0x09 && c.value <= 0x0D) }
        guard let start = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[start...last])
    }

    /// The default system prompt of a ChatML template: the first string literal
    /// `'<|im_start|>system\n<text><|im_end|>...'` whose `<text>` is plain (no quote, so not an
    /// expression), with Jinja's escapes resolved.
    static func defaultSystemPrompt(in template: String) -> String? {
        let marker = "<|im_start|>system"
        var searchFrom = template.startIndex
        while let found = template[searchFrom...].firstRange(of: marker) {
            searchFrom = found.upperBound
            var i = found.upperBound
            // the newline after the role: a real one or Jinja's "\n" escape
            if i < template.endIndex && template[i] == "\n" {
                i = template.index(after: i)
            } else if template[i...].hasPrefix("\\n") {
                i = template.index(i, offsetBy: 2)
            } else {
                continue
            }
            var text = ""
            var ok = false
            while i < template.endIndex {
                if template[i...].hasPrefix("<|im_end|>") { ok = true; break }
                let c = template[i]
                if c == "'" || c == "\"" || c == "{" || c == "}" { break }
                if c == "\\" {
                    let n = template.index(after: i)
                    guard n < template.endIndex else { break }
                    switch template[n] {
                    case "n": text.append("\n")
                    case "t": text.append("\t")
                    case "r": text.append("\r")
                    default: text.append(template[n])
                    }
                    i = template.index(after: n)
                    continue
                }
                text.append(c)
                i = template.index(after: i)
            }
            if ok && !text.isEmpty { return text }
        }
        return nil
    }
}
