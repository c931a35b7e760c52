import ArborGGUF
import ArborTokenizers
import ArgumentParser
import Foundation

/// `arbor tokenize`: show how a model's tokenizer splits text.
struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print the token ids of a text.")

    @OptionGroup var model: ModelOptions
    @Option(help: "The text to tokenize.")
    var text: String
    @Flag(name: .customLong("no-special"), help: "Do not add BOS/EOS even if the model asks for them.")
    var noSpecial = false
    @Flag(name: .customLong("no-parse-special"), help: "Treat special-token text as plain text.")
    var noParseSpecial = false
    @Flag(help: "Print a JSON object with the ids.")
    var json = false

    func run() async throws {
        let file = try GGUFFile(path: try model.resolve())
        let tokenizer = try makeTokenizer(file)
        let ids = tokenizer.encode(text, addSpecial: !noSpecial, parseSpecial: !noParseSpecial)
        if json {
            struct Output: Encodable { let ids: [Int32]; let count: Int; let pieces: [String] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let out = Output(ids: ids, count: ids.count, pieces: ids.map { tokenizer.tokenText($0) })
            print(String(decoding: try encoder.encode(out), as: UTF8.self))
        } else {
            for id in ids { print("\(id)\t\(tokenizer.tokenText(id).debugDescription)") }
            StandardStreams.error("\(ids.count) tokens\n")
        }
    }
}
