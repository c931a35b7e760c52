import ArborEngine
import ArgumentParser
import Foundation

/// `arbor generate`: run a model on a prompt or a chat message and stream the text.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text with a model.",
        discussion: """
            Give either --prompt (raw text, passed to the model as is) or --chat (a user message \
            rendered with the model's chat template). Text streams to stdout; --json prints one \
            JSON object at the end instead.
            """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Raw prompt text.")
    var prompt: String?
    @Option(help: "A user message, formatted with the model's chat template.")
    var chat: String?
    @Option(help: "A system message for --chat.")
    var system: String?
    @Option(name: .customLong("max-tokens"), help: "Maximum number of tokens to generate.")
    var maxTokens: Int = 128
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup(title: "Speculative decoding") var speculation: SpeculationOptions
    @OptionGroup(title: "Remote target") var remote: RemoteOptions
    @Option(name: .customLong("stop"), help: "Stop when this text appears (repeatable).")
    var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Never sample end-of-text tokens; generate until --max-tokens or a stop string.")
    var ignoreEOS = false
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
    @Flag(help: "Print one JSON object with text, token ids and stats.")
    var json = false

    func validate() throws {
        guard (prompt == nil) != (chat == nil) else { throw ValidationError("give exactly one of --prompt or --chat") }
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if system != nil && chat == nil { throw ValidationError("--system needs --chat") }
    }

    func run() async throws {
        // With a remote target this process only drafts: the tokenizer and chat format come from
        // the draft model when there is one (the server checks it has the same vocabulary).
        let threadCount = threads ?? ModelRegistryDefaults.threads
        let localName = remote.isRemote ? (speculation.draftModel ?? model.model) : model.model
        let path = try ModelOptions.resolve(localName)
        let bundle = try ModelBundle.load(path: path, threads: threadCount)
        let tokens: [Int32]
        if let chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: chat))
            tokens = try bundle.chatTokens(messages)
        } else {
            tokens = bundle.promptTokens(prompt ?? "")
        }
        let parameters = GenerationParameters(
            maxTokens: maxTokens, sampling: sampling.parameters, stopStrings: stop, stopAtEndOfText: !ignoreEOS)
        let stream = !json
        let onText: (String) -> Bool = { piece in
            if stream { StandardStreams.write(piece) }
            return true
        }
        let result: GenerationResult
        if remote.isRemote {
            let verifier = try remote.connect(vocabularyHash: bundle.tokenizer.vocabularyFingerprint)
            let drafter: (any Drafter)? = speculation.kind == .model
                ? try ModelDrafter(model: bundle.model, tokenizer: bundle.tokenizer, name: localName,
                                   targetTokenizer: bundle.tokenizer, targetName: verifier.serverInfo.modelName)
                : try speculation.makeDrafter(target: bundle, targetName: verifier.serverInfo.modelName, threads: threadCount)
            var configuration = speculation.configuration
            configuration.budget.maxNodes = min(configuration.budget.maxNodes, verifier.maxTreeNodes)
            let generator = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer,
                                                 configuration: configuration)
            result = try generator.generate(promptTokens: tokens, parameters: parameters, onText: onText)
        } else if speculation.kind == .none {
            let generator = TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer)
            result = try generator.generate(promptTokens: tokens, parameters: parameters, onText: onText)
        } else {
            let drafter = try speculation.makeDrafter(target: bundle, targetName: model.model, threads: threadCount)
            let generator = SpeculativeGenerator(
                verifier: LocalVerifier(model: bundle.model), drafter: drafter, tokenizer: bundle.tokenizer,
                configuration: speculation.configuration)
            result = try generator.generate(promptTokens: tokens, parameters: parameters, onText: onText)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            StandardStreams.write("\n")
            let s = result.stats
            StandardStreams.error(String(
                format: "\n[%d prompt tokens, %.1f ms prefill (%.1f tok/s); %d generated, %.1f ms decode (%.2f tok/s); finish: %@]\n",
                s.promptTokens, s.prefillMilliseconds, s.prefillTokensPerSecond, s.generatedTokens,
                s.decodeMilliseconds, s.tokensPerSecond, result.finishReason.rawValue))
            if let sp = s.speculative {
                StandardStreams.error(String(
                    format: "[speculative %@: %d rounds (%d plain), %d drafted, %d accepted (%.0f%%), %.2f tokens/round, mean verify batch %.1f; draft %.0f ms, verify %.0f ms, sampling %.0f ms; %.2f tok/s]\n",
                    sp.drafter, sp.rounds, sp.plainRounds, sp.draftedNodes, sp.acceptedNodes, sp.acceptanceRate * 100,
                    sp.meanAcceptedLength, sp.meanVerifyBatchSize, sp.draftMilliseconds, sp.verifyMilliseconds,
                    sp.samplingMilliseconds, sp.tokensPerSecond))
                StandardStreams.error("[acceptance by depth: " + sp.acceptanceByDepth.map { String(format: "%.2f", $0) }.joined(separator: " ") + "]\n")
                if let r = sp.remote {
                    let n = max(s.generatedTokens, 1)
                    StandardStreams.error(String(
                        format: "[remote: %d round trips, %.1f ms mean, %d bytes up, %d down (%.0f bytes/token), server busy %.0f ms (%.1f ms/token), %d reconnects]\n",
                        r.roundTrips, r.roundTripMilliseconds / Double(max(r.roundTrips, 1)), r.bytesSent, r.bytesReceived,
                        Double(r.bytesSent + r.bytesReceived) / Double(n), r.serverBusyMilliseconds, r.serverBusyMilliseconds / Double(n), r.reconnects))
                }
            }
        }
    }
}
