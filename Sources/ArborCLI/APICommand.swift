import ArborEngine
import ArborHTTP
import ArborProfiles
import ArborRuntime
import ArgumentParser
import Foundation
import Logging

/// `arbor api`: the OpenAI-compatible HTTP API where the drafter runs, with the target in this
/// process or on an `arbor serve`.
struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the OpenAI-compatible HTTP API (chat and text completions, streaming).",
        discussion: """
            Runs where the drafter runs: the target is --model in this process, or the \
            `arbor serve` at --target-host. Requests choose their drafter, objective and cs \
            (`drafter`, `objective`, `cs`, `speculative.n_max`, `speculative.n_min`); these flags \
            are the defaults.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup(title: "Speculative decoding") var speculation: SpeculationOptions
    @OptionGroup(title: "Remote target") var remote: RemoteOptions
    @OptionGroup(title: "Cost and objective") var cost: CostOptions
    @OptionGroup(title: "Profiles") var profileOptions: ProfileOptions
    @Option(name: .customLong("extra-draft"), help: ArgumentHelp("Another draft model requests may choose as drafter model:<alias> (repeatable; the target's vocabulary).", valueName: "alias|path"))
    var extraDrafts: [String] = []
    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "HTTP port (0: any free port).")
    var port = 8080
    @Option(name: .customLong("api-key-file"), help: "A file whose first line is the API key clients must send as 'Authorization: Bearer <key>'.")
    var apiKeyFile: String?
    @Option(help: "The web UI's server catalog (default: <data dir>/servers.sqlite).")
    var catalog: String?
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if let apiKeyFile { _ = try AuthTokenFile.read(apiKeyFile) }
    }

    func run() async throws {
        StandardStreams.bootstrapLogging(level: logLevel)
        let key = try apiKeyFile.map(AuthTokenFile.read)
        var options = RuntimeOptions(
            model: model, speculation: speculation, remote: try remote.target(clientName: "arbor-api"), threads: threads,
            cost: cost, profiles: profileOptions)
        // Concurrent requests share the target's passes.
        options.sharedTarget = true
        options.extraDraftModels = extraDrafts
        // Resolve (and pull) the models before listening, so a bad name fails at once.
        _ = try ModelOptions.resolve(options.remote != nil ? (options.draftModel ?? options.model) : options.model)
        for d in (options.draftModel.map { [$0] } ?? []) + extraDrafts { _ = try ModelOptions.resolve(d) }
        let server = APIServer(configuration: APIConfiguration(
            host: host, port: port, apiKey: key,
            catalogPath: catalog ?? ArborPaths.dataDirectory().appendingPathComponent("servers.sqlite").path))
        let host = host
        try await server.run(
            options: options,
            makeRuntime: { try Runtime(options: $0, resolveModel: ModelOptions.resolve, warn: { StandardStreams.error("warning: \($0)\n") }) },
            onListening: { StandardStreams.write("arbor api: listening on http://\(host):\($0)\n") })
    }
}
