import ArgumentParser

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "(not yet built)")
    func run() async throws { throw ValidationError("not yet built") }
}
