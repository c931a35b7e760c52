import ArgumentParser

struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "(not yet built)")
    func run() async throws { throw ValidationError("not yet built") }
}
