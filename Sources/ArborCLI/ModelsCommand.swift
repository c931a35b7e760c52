import ArgumentParser

struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "(not yet built)")
    func run() async throws { throw ValidationError("not yet built") }
}
