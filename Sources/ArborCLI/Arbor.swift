import ArgumentParser

/// The `arbor` command: run, inspect and fetch GGUF language models.
@main
struct Arbor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "arbor",
        abstract: "Arbor: a speculative-decoding inference engine for GGUF language models.",
        subcommands: [
            ModelsCommand.self,
            PromptsCommand.self,
            InspectCommand.self,
            TokenizeCommand.self,
            GenerateCommand.self,
            APICommand.self,
            ServeCommand.self,
            BenchCommand.self,
            TradeoffCommand.self,
            EvalCommand.self,
            ProfileCommand.self,
        ]
    )
}
