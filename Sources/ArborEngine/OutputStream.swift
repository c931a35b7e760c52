import ArborTokenizers

/// Turns generated token ids into the request's output, applying the stop rules in one place so
/// that plain and speculative generation stop at exactly the same token: an end-of-generation
/// token (not included), a stop string (the text is cut before it), or the token limit.
struct OutputStream {
    let tokenizer: any Tokenizer
    let parameters: GenerationParameters
    private(set) var tokens: [Int32] = []
    private(set) var text = ""
    private(set) var finish: FinishReason?
    private var detokenizer: StreamingDetokenizer

    init(tokenizer: any Tokenizer, parameters: GenerationParameters) {
        self.tokenizer = tokenizer
        self.parameters = parameters
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        if parameters.maxTokens <= 0 { finish = .length }
    }

    var isFinished: Bool { finish != nil }

    /// Appends one token; returns false when generation must stop (the token may or may not have
    /// been kept, per the rules above). `onText` gets each new complete piece of text; when it
    /// returns false the stream ends early with finish reason `.length`, as plain generation did.
    mutating func append(_ token: Int32, onText: (String) -> Bool) -> Bool {
        guard finish == nil else { return false }
        if parameters.stopAtEndOfText && tokenizer.endOfGenerationTokens.contains(token) {
            finish = .endOfText
            return false
        }
        tokens.append(token)
        let piece = detokenizer.append(token)
        text += piece
        if let cut = TextGenerator.firstStop(in: text, stops: parameters.stopStrings) {
            text = String(text[..<cut])
            finish = .stop
            return false
        }
        if !piece.isEmpty && !onText(piece) { finish = .length; return false }
        if tokens.count >= parameters.maxTokens { finish = .length; return false }
        return true
    }

    /// Flushes buffered bytes at the end (not after a stop string).
    mutating func close(onText: (String) -> Bool) {
        if finish == nil { finish = .length }
        if finish != .stop {
            let tail = detokenizer.finish()
            if !tail.isEmpty { text += tail; _ = onText(tail) }
        }
    }
}
