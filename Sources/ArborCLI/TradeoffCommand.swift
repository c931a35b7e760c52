import ArborProfiles
import ArborBench
import ArborEngine
import ArborRuntime
import ArborStore
import ArgumentParser
import Foundation

/// `arbor tradeoff`: the speed–cost curve of the cost-aware policy against static baselines.
struct TradeoffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tradeoff",
        abstract: "Run a prompt set at several cs values and static baselines; write the speed–cost curve (JSON, CSV, PNG, SVG).",
        discussion: """
            Each setting generates every prompt (chat-rendered, greedy) against the target — in \
            this process, or an `arbor serve` with --target-host. Adaptive settings run the \
            cost-aware policy at one cs value for --objective, starting from the stored profile; \
            baselines are static. Every setting's resources (target time and energy, draft \
            energy, bytes) are measured, so the report holds its cost under every objective.

            Baselines: one-per-rtt (no drafter: one token per round trip), chain<k> (a fixed \
            chain of depth k), tree<N>w<w> (a fixed tree of N nodes, width w, depth N/w), \
            server-alone (the target decodes alone in this process, billed as server time; run \
            it where the server runs), server-spec (drafter and target both in this process, \
            the drafter's time billed as server time), run-ahead (no drafting here: the remote \
            server decodes up to --max-run-ahead tokens per exchange; against a server with \
            --decode-drafter, server-side speculation across the network). Outputs equal to the first setting's are \
            counted (greedy: all of them should be).
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup(title: "Speculative decoding") var speculation: SpeculationOptions
    @OptionGroup(title: "Remote target") var remote: RemoteOptions
    @OptionGroup(title: "Cost and objective") var cost: CostOptions
    @OptionGroup(title: "Profiles") var profileOptions: ProfileOptions
    @Option(name: .customLong("set"), help: "Prompt set (humaneval, mtbench).")
    var set = "humaneval"
    @Option(help: "First N prompts of the set.")
    var limit = 20
    @Option(name: .customLong("max-tokens"), help: "Tokens generated per prompt (fewer if the model ends).")
    var maxTokens = 128
    @Option(name: .customLong("cs-values"), parsing: .upToNextOption, help: "cs values of the adaptive settings (tps, balanced, cost, 0…1).")
    var csValues: [String] = ["0", "0.25", "0.5", "0.75", "1"]
    @Option(name: .customLong("baselines"), parsing: .upToNextOption, help: "Static baselines: one-per-rtt, chain<k>, tree<N>w<w>, server-alone, server-spec, run-ahead.")
    var baselines: [String] = ["one-per-rtt", "chain4", "tree16w4"]
    @Option(help: "Prompts run (unmeasured) first, alternately at cs = 1 and cs = 0, so every setting starts from a profile that has seen drafting, drafting ahead and running ahead.")
    var warmup = 2
    @Flag(name: .customLong("compare-proactive"), help: "Also run the first cs value with proactive drafting off.")
    var compareProactive = false
    @Flag(name: .customLong("compare-deepening"), help: "Also run the first and last cs values with deepening drafts past the planned depth toggled (--deepen or not).")
    var compareDeepening = false
    @Option(help: "A label for this environment (e.g. \"80 ms\").")
    var label = ""
    @Option(help: "Output directory (default: <data dir>/tradeoff/<time>).")
    var out: String?
    @Option(help: "Worker threads.")
    var threads: Int?
    @Flag(help: "Print one line per prompt to stderr, with its rounds (kind, tokens and ms, measured / predicted).")
    var verbose = false

    /// The lists with `none` meaning empty.
    var baselineNames: [String] { baselines == ["none"] ? [] : baselines }
    var csNames: [String] { csValues == ["none"] ? [] : csValues }

    func validate() throws {
        for b in baselineNames where Baseline(b) == nil {
            throw ValidationError("unknown baseline '\(b)' (one-per-rtt, chain<k>, tree<N>w<w>, server-alone, server-spec, run-ahead)")
        }
        for c in csNames {
            do { _ = try CostSensitivity(parsing: c) } catch { throw ValidationError("\(error)") }
        }
        guard limit >= 1, maxTokens >= 1, (threads ?? 1) >= 1 else { throw ValidationError("--limit, --max-tokens and --threads must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be ≥ 0") }
        if remote.isRemote, baselineNames.contains(where: { $0.hasPrefix("server-") }) {
            throw ValidationError("server-alone and server-spec run the target in this process: run them without --target-host, where the server runs")
        }
        if !remote.isRemote, baselineNames.contains("run-ahead") {
            throw ValidationError("run-ahead asks a remote server to decode by itself: it needs --target-host")
        }
    }

    /// A static baseline, parsed from its name.
    enum Baseline: Equatable {
        case onePerRoundTrip, chain(Int), tree(nodes: Int, width: Int), serverAlone, serverSpeculation, runAhead

        init?(_ name: String) {
            switch name {
            case "one-per-rtt": self = .onePerRoundTrip
            case "server-alone": self = .serverAlone
            case "server-spec": self = .serverSpeculation
            case "run-ahead": self = .runAhead
            default:
                if name.hasPrefix("chain"), let k = Int(name.dropFirst(5)), k >= 1 { self = .chain(k); return }
                let parts = name.dropFirst(4).split(separator: "w")
                if name.hasPrefix("tree"), parts.count == 2, let n = Int(parts[0]), let w = Int(parts[1]), n >= 1, w >= 1 {
                    self = .tree(nodes: n, width: w)
                    return
                }
                return nil
            }
        }
    }

    func run() async throws {
        // The runtime composes the target and the drafter; every setting below builds its own
        // generator on them (a draft model is loaded once).
        let options = RuntimeOptions(
            model: model, speculation: speculation, remote: try remote.target(clientName: "arbor-tradeoff"), threads: threads,
            cost: cost, profiles: profileOptions)
        let runtime = try Runtime(options: options, resolveModel: ModelOptions.resolve, warn: { StandardStreams.error("warning: \($0)\n") })
        let bundle = runtime.local
        let items = try PromptsCommand.items(set, limit: limit)
        let prompts = try items.map { try bundle.chatTokens([ChatMessage(role: "user", content: $0.userMessage)]) }

        let target = runtime.target
        let verifier = target.verifier
        let advertisedPrice = target.advertisedPrice
        let preferences = cost.preferences(advertisedPrice: advertisedPrice)
        let meter = EnergyMeter(wattsPerCore: cost.wattsPerCore)
        let drafter = try runtime.drafter(for: speculation.choice)
        let profiles = runtime.persistence(for: drafter)
        var startProfile = target.seeded(profiles.load())
        let parameters = GenerationParameters(maxTokens: maxTokens, sampling: .greedy)
        let base = cost.apply(to: speculation.configuration, advertisedPrice: advertisedPrice)
        if drafter != nil, !csNames.isEmpty, warmup > 0 {
            // Learn the environment first (unmeasured), as a user's earlier requests would have:
            // alternately at the two ends of the knob, without a service level, so that the
            // profile holds evidence of drafting (cs = 1: acceptance by depth, draft steps) and of
            // drafting ahead and running ahead (cs = 0) alike, whatever the settings measured.
            // - Warmed at speed alone, a profile at 80 ms held one drafted round, and cs = 0 then
            //   ran ahead for 336 HumanEval tokens until its probes had relearned acceptance.
            // - Warmed under a service level that only running ahead keeps, from a profile
            //   learned on MT-bench, a HumanEval SLO run learned nothing of drafting and ran
            //   ahead for 949 of 960 tokens; warmed at cs = 1 alone, it learned acceptance but not
            //   how often trees drafted ahead are used, and still ran ahead for 884.
            var profile = startProfile
            for (i, p) in prompts.prefix(warmup).enumerated() {
                var c = base
                c.preferences.cs = i.isMultiple(of: 2) ? .cost : .speed
                c.preferences.serviceLevel = nil
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer, configuration: c, profile: profile)
                _ = try g.generate(promptTokens: p, parameters: parameters)
                profile = g.policy.profile
            }
            startProfile = profile
            let p = startProfile, n = ProfileCommand.number
            // What every setting starts from (each runs from this profile, not from the last setting's).
            StandardStreams.error("warm-up: \(min(warmup, prompts.count)) prompts, \(p.rounds) rounds in the profile (draft step \(n(p.draftStep(width: 1).milliseconds, 1)) ms, "
                + "depth-1 acceptance \(n(p.depthAcceptance(1), 3)) over \(p.depthObservations.first ?? 0) rounds, "
                + "run-ahead \(n(p.runAheadMillisecondsPerToken, 1)) ms/token)\n")
        }

        var report = TradeoffReport(label: label, objective: cost.objective, rates: preferences.rates, promptSet: set, maxTokens: maxTokens)
        report.drafter = drafter?.name ?? "none"
        report.server = target.serverName
        report.target = target.targetName
        // The settings, registered below and then run prompt by prompt in turn.
        var settings: [(point: TradeoffPoint, generate: ([Int32]) throws -> (GenerationResult, ResourceUse))] = []
        func measure(_ name: String, kind: TradeoffPoint.Kind, cs: Double?, billing: String? = nil,
                     generate: @escaping ([Int32]) throws -> (GenerationResult, ResourceUse)) {
            var point = TradeoffPoint(name: name, kind: kind, cs: cs, objective: cost.objective, draftEnergySource: meter.source)
            point.billing = billing
            settings.append((point, generate))
        }
        // Resources of a run whose every millisecond is the server's (server-side baselines):
        // decode time and process CPU energy on the server; bytes of the streamed text.
        func serverSide(_ body: () throws -> GenerationResult) throws -> (GenerationResult, ResourceUse) {
            let reading = meter.read()
            let r = try body()
            let (_, joules) = meter.since(reading)
            let down = Double(r.text.utf8.count + 6 * r.tokens.count)
            return (r, ResourceUse(targetMilliseconds: r.stats.decodeMilliseconds, targetJoules: joules, bytesDown: down))
        }
        func measured(_ r: GenerationResult) -> ResourceUse { r.stats.speculative?.cost?.measured ?? ResourceUse() }

        for name in baselineNames {
            switch Baseline(name)! {
            case .serverAlone:
                let generator = TextGenerator(model: bundle.model, tokenizer: bundle.tokenizer)
                measure(name, kind: .baseline, cs: nil, billing: "all decode time billed as target time; bytes: streamed text + 6 B per token") { p in
                    try serverSide { try generator.generate(promptTokens: p, parameters: parameters) }
                }
            case .serverSpeculation:
                var c = base
                c.preferences = CostPreferences(objective: .tps, rates: preferences.rates)
                c.proactive = false
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer, configuration: c, profile: startProfile)
                measure(name, kind: .baseline, cs: nil, billing: "drafter on the server: draft and target time billed as target time; bytes: streamed text + 6 B per token") { p in
                    try serverSide { try g.generate(promptTokens: p, parameters: parameters) }
                }
            case .onePerRoundTrip:
                var c = base
                c.maxRunAhead = 0
                let g = SpeculativeGenerator(verifier: verifier, drafter: nil, tokenizer: bundle.tokenizer, configuration: c)
                measure(name, kind: .baseline, cs: nil) { p in
                    let r = try g.generate(promptTokens: p, parameters: parameters)
                    return (r, measured(r))
                }
            case .runAhead:
                // No drafter here: plain or run-ahead rounds, whichever the profile says is faster
                // (with a network in between, run-ahead rounds of the largest size).
                var c = base
                c.preferences = CostPreferences(objective: .tps, rates: preferences.rates)
                c.proactive = false
                let g = SpeculativeGenerator(verifier: verifier, drafter: nil, tokenizer: bundle.tokenizer, configuration: c, profile: startProfile)
                measure(name, kind: .baseline, cs: nil) { p in
                    let r = try g.generate(promptTokens: p, parameters: parameters)
                    return (r, measured(r))
                }
            case let .chain(k):
                var c = base
                c.budget = .chain(k)
                c.adaptive = false
                c.proactive = false
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer, configuration: c, profile: startProfile)
                measure(name, kind: .baseline, cs: nil) { p in
                    let r = try g.generate(promptTokens: p, parameters: parameters)
                    return (r, measured(r))
                }
            case let .tree(n, w):
                var c = base
                c.budget = DraftBudget(maxNodes: n, maxDepth: max(2, n / w), maxWidth: w)
                c.adaptive = false
                c.proactive = false
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer, configuration: c, profile: startProfile)
                measure(name, kind: .baseline, cs: nil) { p in
                    let r = try g.generate(promptTokens: p, parameters: parameters)
                    return (r, measured(r))
                }
            }
        }
        // The adaptive setting whose profile is stored at the end (the last).
        var learnedBy: SpeculativeGenerator?
        if drafter != nil, !csNames.isEmpty {
            var runs = csNames.map { (text: $0, proactive: base.proactive, deepening: base.deepening) }
            if compareProactive, let first = csNames.first { runs.insert((first, false, base.deepening), at: 1) }
            if compareDeepening, let first = csNames.first, let last = csNames.last {
                runs.insert((first, base.proactive, !base.deepening), at: 1)
                if last != first { runs.append((last, base.proactive, !base.deepening)) }
            }
            for (text, proactive, deepening) in runs {
                let cs = try CostSensitivity(parsing: text)
                var c = base
                c.preferences.cs = cs
                c.proactive = proactive
                c.deepening = deepening
                // Each cs value starts from the stored profile, as a new process would.
                let g = SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: bundle.tokenizer, configuration: c, profile: startProfile)
                var name = "cs=\(text)" + (proactive == base.proactive ? "" : proactive ? " proactive" : " no-proactive")
                    + (deepening == base.deepening ? "" : deepening ? " deepening" : " no-deepening")
                var kind: TradeoffPoint.Kind = proactive == base.proactive && deepening == base.deepening ? .adaptive : .baseline
                switch c.preferences.serviceLevel {
                case let .minTokensPerSecond(x)?:
                    name = String(format: "SLO ≥ %.1f tok/s", x) + name.dropFirst("cs=\(text)".count)
                    if kind == .adaptive { kind = .serviceLevel }
                case let .maxCostPerMillionTokens(y)?:
                    name = String(format: "SLO ≤ %.4g per Mtok", y) + name.dropFirst("cs=\(text)".count)
                    if kind == .adaptive { kind = .serviceLevel }
                case nil: break
                }
                measure(name, kind: kind, cs: cs.value) { p in
                    let r = try g.generate(promptTokens: p, parameters: parameters)
                    return (r, measured(r))
                }
                learnedBy = g
            }
        }

        // Each prompt goes through every setting in turn, rather than each setting through every
        // prompt: the server's speed drifts over the minutes a setting takes (the same run-ahead
        // plan gave 26.1 tokens/s in one run and 31.7 in the next), and settings measured minutes
        // apart compared the drift as much as the settings. Interleaved, they share it. The
        // first setting's outputs are the reference of the others'.
        var reference: [[Int32]] = []
        for (i, prompt) in prompts.enumerated() {
            for s in settings.indices {
                let (r, use) = try settings[s].generate(prompt)
                if s == 0 { reference.append(r.tokens) }
                settings[s].point.add(r, resources: use, reference: s == 0 ? nil : reference[i])
                if verbose {
                    // Each round: a<k> a run-ahead of k, p plain, d<depth>/<nodes sent> drafted (+ when
                    // drafted ahead); then tokens committed / predicted, ms measured / predicted.
                    let rounds = (r.stats.speculative?.plans ?? []).map { round in
                        let kind = round.runAhead > 0 ? "a\(round.runAhead)"
                            : round.nodes == 0 ? "p" : "d\(round.draftedDepth)/\(round.nodes)\(round.draftedAhead ? "+" : "")"
                        return kind + String(format: " %d/%.1f %.0f/%.0f", round.tokens, round.predictedTokens, round.milliseconds, round.predictedMilliseconds)
                    }
                    StandardStreams.error(String(format: "  %@ #%d: %d tokens, %.1f tok/s; ", settings[s].point.name, i, r.tokens.count, r.stats.tokensPerSecond)
                        + rounds.joined(separator: ", ") + "\n")
                }
            }
        }
        for (point, _) in settings {
            let c = point.costPerMillionTokens(cost.objective == .tps ? .totalCost : cost.objective, rates: preferences.rates)
            StandardStreams.error(String(format: "%@ %@: %.2f tok/s, %.6g per Mtok, %d/%d identical\n",
                                         label.isEmpty ? set : label, point.name, point.tokensPerSecond, c, point.identical, point.compared))
            report.points.append(point)
        }
        if let g = learnedBy { profiles.save(g.policy.profile) }

        let dir = URL(fileURLWithPath: out ?? ProfileOptions.dataDirectory().appendingPathComponent("tradeoff/\(Int(Date().timeIntervalSince1970))").path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(report).write(to: dir.appendingPathComponent("tradeoff.json"))
        try report.csv.write(to: dir.appendingPathComponent("tradeoff.csv"), atomically: true, encoding: .utf8)
        print(BenchOutput.table(
            ["setting", "tok/s", "total $/Mtok", "energy J/tok", "accept", "tokens/round", "ahead used", "identical"],
            report.points.map { p in
                [p.name, String(format: "%.2f", p.tokensPerSecond),
                 String(format: "%.4f", p.costPerMillionTokens(.totalCost, rates: report.rates)),
                 String(format: "%.3f", p.costPerMillionTokens(.energyTotal, rates: report.rates) / 1e6),
                 BenchOutput.percent(p.speculative?.acceptanceRate ?? 0), String(format: "%.2f", p.speculative?.meanAcceptedLength ?? 1),
                 p.speculative.map { "\($0.proactive.hits)/\($0.proactive.started)" } ?? "-", "\(p.identical)/\(p.compared)"]
            }))
        print("energy: draft \(meter.source.rawValue)\(meter.source == .modelled ? String(format: " (CPU time × %.1f W per core)", cost.wattsPerCore) : " (RAPL)"), target \(report.points.compactMap(\.targetEnergySource).first?.rawValue ?? "modelled")")
        print("wrote \(dir.path)/tradeoff.json and tradeoff.csv")
        TradeoffChart.render(directory: dir)
    }
}

/// Draws the curve with the project's matplotlib script, when Python and matplotlib are there.
enum TradeoffChart {
    static func render(directory: URL) {
        guard let script = locateScript() else {
            StandardStreams.error("chart: scripts/plot_tradeoff.py not found; run it by hand: python3 scripts/plot_tradeoff.py \(directory.path)\n")
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, directory.path]
        do {
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 {
                StandardStreams.error("chart: \(script) failed (is matplotlib installed? pip install matplotlib)\n")
            }
        } catch {
            StandardStreams.error("chart: cannot run python3: \(error)\n")
        }
    }

    /// The script beside the checkout the binary was built in, or in the working directory.
    static func locateScript() -> String? {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            exe.deletingLastPathComponent().appendingPathComponent("../../scripts/plot_tradeoff.py").standardized.path,
            exe.deletingLastPathComponent().appendingPathComponent("../../../scripts/plot_tradeoff.py").standardized.path,
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("scripts").appendingPathComponent("plot_tradeoff.py").path,
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }
}
