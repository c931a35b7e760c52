import ArborTokenizers

/// A piece of generated text, emitted as soon as it is complete (never broken UTF-8), with where
/// the token that completed it came from.
public struct TextPiece: Sendable, Equatable {
    public var text: String
    /// True when that token was drafted and accepted by the target; false when it is the target's
    /// own (a correction, a bonus token, a run-ahead or a plain decoding step).
    public var drafted: Bool

    public init(text: String, drafted: Bool = false) {
        self.text = text
        self.drafted = drafted
    }
}

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
    /// Bytes of `text` already given to `onText`. Text that may be the start of a stop string is
    /// held back until it is known not to be one, so a stream never shows what the final text
    /// cuts (streamed and returned text are the same).
    private var emitted = 0
    /// Whether the newest held-back token was drafted.
    private var heldDrafted = false

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
    mutating func append(_ token: Int32, drafted: Bool = false, onText: (TextPiece) -> Bool) -> Bool {
        guard finish == nil else { return false }
        if parameters.stopAtEndOfText && tokenizer.endOfGenerationTokens.contains(token) {
            finish = .endOfText
            return false
        }
        tokens.append(token)
        let piece = detokenizer.append(token)
        text += piece
        if !piece.isEmpty { heldDrafted = drafted }
        if let cut = TextGenerator.firstStop(in: text, stops: parameters.stopStrings) {
            text = String(text[..<cut])
            finish = .stop
            _ = flush(upTo: text.utf8.count, onText: onText)
            return false
        }
        let safe = text.utf8.count - Self.partialStop(at: text, stops: parameters.stopStrings)
        if !flush(upTo: safe, onText: onText) { finish = .length; return false }
        if tokens.count >= parameters.maxTokens { finish = .length; return false }
        return true
    }

    /// Gives `onText` the text from what was emitted up to byte `end`; false if it asked to stop.
    private mutating func flush(upTo end: Int, onText: (TextPiece) -> Bool) -> Bool {
        guard end > emitted else { return true }
        let utf8 = text.utf8
        let piece = String(decoding: utf8[utf8.index(utf8.startIndex, offsetBy: emitted)..<utf8.index(utf8.startIndex, offsetBy: end)], as: UTF8.self)
        emitted = end
        return onText(TextPiece(text: piece, drafted: heldDrafted))
    }

    /// Bytes at the end of `text` that are the beginning of a stop string (and so may yet become
    /// one). A match starts at a character boundary: a stop string begins with a lead byte.
    static func partialStop(at text: String, stops: [String]) -> Int {
        var held = 0
        let t = Array(text.utf8.suffix(stops.map { $0.utf8.count }.max() ?? 0))
        for stop in stops where !stop.isEmpty {
            let s = Array(stop.utf8)
            var k = min(s.count - 1, t.count)
            while k > held {
                if t[(t.count - k)...].elementsEqual(s[..<k]) { held = k; break }
                k -= 1
            }
        }
        return held
    }

    /// Flushes buffered bytes at the end (not after a stop string).
    mutating func close(onText: (TextPiece) -> Bool) {
        if finish == nil { finish = .length }
        if finish != .stop {
            text += detokenizer.finish()
            _ = flush(upTo: text.utf8.count, onText: onText)
        }
    }
}
