/// The `Tokenizer` members that only read the vocabulary, shared by every tokenizer kind.
protocol VocabularyBacked: Tokenizer {
    var vocab: Vocabulary { get }
}

extension VocabularyBacked {
    public var vocabularySize: Int { vocab.count }
    public var bosToken: Int32? { vocab.bos }
    public var eosToken: Int32? { vocab.eos }
    public var endOfGenerationTokens: Set<Int32> { vocab.endOfGeneration }
    public var addBOS: Bool { vocab.addBOS }
    /// The end-of-turn token (`<|im_end|>`, `<end_of_turn>`, ...) if there is one.
    public var eotToken: Int32? { vocab.eot }

    public func tokenText(_ id: Int32) -> String { vocab.isValid(id) ? vocab.texts[Int(id)] : "" }
    public func tokenBytes(_ id: Int32) -> [UInt8] { Array(vocab.piece(id)) }
    public func isControl(_ id: Int32) -> Bool { vocab.isControl(id) }
    public func attributes(_ id: Int32) -> TokenAttributes { vocab.isValid(id) ? vocab.attributes[Int(id)] : [] }
    public func decode(_ ids: [Int32]) -> String { vocab.decode(ids, renderSpecial: false) }
    public func decode(_ ids: [Int32], renderSpecial: Bool) -> String { vocab.decode(ids, renderSpecial: renderSpecial) }
}
