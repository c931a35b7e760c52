import ArborProfiles
import ArborEngine
import ArborRuntime
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
    @OptionGroup(title: "Cost and objective") var cost: CostOptions
    @OptionGroup(title: "Profiles") var profileOptions: ProfileOptions
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
        // One composition for every target: a verifier (this process or a server), a drafter,
        // and a policy that starts from what earlier runs learned.
        // No drafter named: the router picks one per request (`--drafter auto`).
        let choice = speculation.drafter == nil && speculation.draftModel == nil ? DrafterChoice.auto : speculation.choice
        let options = RuntimeOptions(
            model: model, speculation: speculation, drafter: choice, remote: try remote.target(), threads: threads,
            cost: cost, profiles: profileOptions)
        let runtime = try Runtime(options: options, resolveModel: ModelOptions.resolve, warn: { StandardStreams.error("warning: \($0)\n") })
        let tokens: [Int32]
        if let chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: chat))
            tokens = try runtime.chatTokens(messages)
        } else {
            tokens = runtime.promptTokens(prompt ?? "")
        }
        let parameters = GenerationParameters(
            maxTokens: maxTokens, sampling: sampling.parameters, stopStrings: stop, stopAtEndOfText: !ignoreEOS)
        let stream = !json
        let result = try runtime.generate(prompt: tokens, parameters: parameters, onEvent: { event in
            if stream, case let .piece(p) = event { StandardStreams.write(p.text) }
            return true
        })
        let target = runtime.target
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
                StandardStreams.error("[acceptance by depth: " + sp.acceptanceByDepth.map { String(format: "%.2f", $0) }.joined(separator: " ")
                    + (sp.deepenedRounds > 0 ? "; \(sp.deepenedRounds) rounds drafted past their planned depth" : "") + "]\n")
                if let c = sp.cost {
                    StandardStreams.error(Self.costLine(c, proactive: sp.proactive) + "\n")
                    if c.objective != .tps,
                       let (file, curve) = TradeoffReport.latest(drafter: sp.drafter, server: target.serverName, target: target.targetName, objective: c.objective),
                       let near = curve.nearestAdaptivePoint(tokensPerSecond: c.tokensPerSecond, costPerMillionTokens: c.costPerMillionTokens) {
                        StandardStreams.error(String(
                            format: "[on the trade-off curve of %@: nearest point %@ (%.2f tok/s, %.4g per Mtok)]\n", file.deletingLastPathComponent().path,
                            near.name, near.tokensPerSecond, near.costPerMillionTokens(c.objective, rates: curve.rates)))
                    }
                }
                if let r = sp.remote {
                    let n = max(s.generatedTokens, 1)
                    StandardStreams.error(String(
                        format: "[remote: %d round trips, %.1f ms mean, %d bytes up, %d down (%.0f bytes/token), server busy %.0f ms (%.1f ms/token), %d reconnects]\n",
                        r.roundTrips, r.roundTripMilliseconds / Double(max(r.roundTrips, 1)), r.bytesSent, r.bytesReceived,
                        Double(r.bytesSent + r.bytesReceived) / Double(n), r.serverBusyMilliseconds, r.serverBusyMilliseconds / Double(n), r.reconnects))
                    if r.queuedConnections > 0 || r.resumedSessions > 0 {
                        StandardStreams.error(String(format: "[remote: queued for a session slot %d time(s), %.0f ms in all; %d session(s) resumed on a new connection]\n",
                                                     r.queuedConnections, r.queueWaitMilliseconds, r.resumedSessions))
                    }
                }
            }
        }
    }

    /// The request's cost in one line: objective and knob, predicted against measured speed and
    /// cost, the components, and where the energy figures come from.
    static func costLine(_ c: CostReport, proactive: ProactiveStats) -> String {
        let b = c.breakdown
        var line = String(
            format: "[cost %@, cs %@: %.2f tok/s predicted, %.2f measured; %@ per Mtok predicted, %@ measured; $/Mtok target %.4f + draft %.4f + up %.4f + down %.4f = %.4f; energy %.3f J/token (draft %@, target %@)",
            c.objective.rawValue, c.cs.description, c.predictedTokensPerSecond, c.tokensPerSecond,
            Self.amount(c.predictedCostPerMillionTokens, c.objective), Self.amount(c.costPerMillionTokens, c.objective),
            b.targetDollars / Double(max(c.tokens, 1)) * 1e6, b.draftDollars / Double(max(c.tokens, 1)) * 1e6,
            b.uplinkDollars / Double(max(c.tokens, 1)) * 1e6, b.downlinkDollars / Double(max(c.tokens, 1)) * 1e6,
            c.totalDollarsPerMillionTokens, c.joulesPerToken, c.draftEnergySource.rawValue, c.targetEnergySource?.rawValue ?? "modelled")
        if proactive.started > 0 {
            line += String(format: "; drafted ahead %d, used %d, wasted %.0f ms", proactive.started, proactive.hits, proactive.wastedDraftMilliseconds)
        }
        line += "]"
        if let note = c.serviceLevelNote { line += "\n[" + note + "]" }
        return line
    }

    static func amount(_ v: Double, _ objective: Objective) -> String {
        switch objective.unit {
        case "$": String(format: "$%.4f", v)
        case "J": String(format: "%.1f J", v)
        default: "-"
        }
    }
}
