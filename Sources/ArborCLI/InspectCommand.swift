import ArgumentParser

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "(not yet built)")
    func run() async throws { throw ValidationError("not yet built") }
}
