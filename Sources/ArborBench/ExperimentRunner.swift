import ArborEngine
import ArborProfiles
import ArborRemote
import ArborRuntime
import Foundation

/// Runs an `ExperimentPlan` cell by cell, each finished cell saved at once under
/// `<out>/cells/`, so an interrupted run resumes where it stopped: a saved cell whose fingerprint
/// still matches is read back, not re-run.
///
/// Every request goes through `Runtime`, the composition `arbor generate` and `arbor api` use, so
/// a cell measures what a user would get. Each cell builds its own runtime: drafters that learn
/// across requests (the suffix index) learn within the cell's prompts only, and a cell's numbers
/// do not depend on which cells ran before it. Profiles live in `<out>/profiles.sqlite`.
public final class ExperimentRunner {
    public let plan: ExperimentPlan
    public let outDirectory: URL
    /// The prompts of a set (`limit` first), as chat messages' user text.
    public let prompts: (_ set: String, _ limit: Int) throws -> [String]
    /// Model alias or path → GGUF path.
    public let resolveModel: @Sendable (String) throws -> String
    /// Starts targets for remote cells (`arbor serve` behind a delay relay).
    public var remoteTargets: RemoteTargetLauncher?
    /// Told of each cell as it starts and ends, and of each prompt.
    public var progress: (RunnerEvent) -> Void = { _ in }

    public enum RunnerEvent {
        case cellStarted(index: Int, count: Int, CellSpec, prompts: Int)
        case promptFinished(CellSpec, index: Int, PromptRecord)
        case cellFinished(index: Int, count: Int, CellResult, resumed: Bool)
        case cellSkipped(index: Int, count: Int, CellSpec, reason: String)
    }

    public init(plan: ExperimentPlan, outDirectory: URL, prompts: @escaping (String, Int) throws -> [String],
                resolveModel: @escaping @Sendable (String) throws -> String) {
        self.plan = plan
        self.outDirectory = outDirectory
        self.prompts = prompts
        self.resolveModel = resolveModel
    }

    /// What the run's cells depend on besides their specs, the CPU model among them: a run
    /// resumed on another kind of machine starts over, since its speedups divide by a baseline
    /// measured in the same run.
    public var fingerprint: String {
        let c = plan.config
        return [c.models.target, c.models.draft ?? "-", c.models.crossDraft ?? "-", "\(c.runtime.maxTokens)", "\(c.runtime.threads)",
                "\(c.runtime.seed)", ProfileKey.thisCPU ?? "-"].joined(separator: "|")
    }

    var cellsDirectory: URL { outDirectory.appendingPathComponent("cells") }

    func file(for spec: CellSpec) -> URL {
        let safe = spec.id.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return cellsDirectory.appendingPathComponent(String(safe) + ".json")
    }

    /// A saved cell, if it is this spec's and fingerprint's; unreadable files count as absent.
    func saved(_ spec: CellSpec) -> CellResult? {
        guard let data = try? Data(contentsOf: file(for: spec)),
              let cell = try? JSONDecoder().decode(CellResult.self, from: data),
              cell.spec == spec, cell.fingerprint == fingerprint else { return nil }
        return cell
    }

    func save(_ cell: CellResult) throws {
        try FileManager.default.createDirectory(at: cellsDirectory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Write then rename: an interruption leaves the old file or none, never half a cell.
        let target = file(for: cell.spec)
        let temporary = target.appendingPathExtension("partial")
        try encoder.encode(cell).write(to: temporary)
        guard rename(temporary.path, target.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: target.path])
        }
    }

    /// Runs every cell not already saved; returns all cells in plan order (skipped ones absent).
    public func run() throws -> [CellResult] {
        var results: [CellResult] = []
        let count = plan.cells.count
        for (i, spec) in plan.cells.enumerated() {
            if let cell = saved(spec) {
                results.append(cell)
                progress(.cellFinished(index: i, count: count, cell, resumed: true))
                continue
            }
            do {
                let cell = try run(spec, index: i, count: count)
                try save(cell)
                results.append(cell)
                progress(.cellFinished(index: i, count: count, cell, resumed: false))
            } catch let e as CellSkipped {
                progress(.cellSkipped(index: i, count: count, spec, reason: e.reason))
            }
        }
        return results
    }

    /// Every measured cell of `full`: this run's (`ran`), else one saved earlier with this run's
    /// fingerprint, in `full`'s order. A run of some experiments (`--experiments`) then still
    /// reports the others already measured.
    public func cells(of full: ExperimentPlan, ran: [CellResult]) -> [CellResult] {
        let fresh = Dictionary(ran.map { ($0.spec.id, $0) }, uniquingKeysWith: { _, last in last })
        return full.cells.compactMap { fresh[$0.id] ?? saved($0) }
    }

    struct CellSkipped: Error { var reason: String }

    /// The prompts of a cell: a set's first `limit`, or for `mix` the sets' prompts interleaved.
    func items(for spec: CellSpec) throws -> [(set: String, index: Int, text: String)] {
        if spec.set != "mix" {
            return try prompts(spec.set, spec.limit).enumerated().map { (spec.set, $0.offset, $0.element) }
        }
        let sets = plan.config.prompts.sets
        let lists = try sets.map { try prompts($0, spec.limit) }
        var out: [(String, Int, String)] = []
        for i in 0..<(lists.map(\.count).max() ?? 0) {
            for (s, list) in zip(sets, lists) where i < list.count { out.append((s, i, list[i])) }
        }
        return out
    }

    func run(_ spec: CellSpec, index: Int, count: Int) throws -> CellResult {
        let c = plan.config
        var remote: RemoteTarget? = nil
        if let delay = spec.delayMs {
            guard let launcher = remoteTargets else { throw CellSkipped(reason: "remote cells need `arbor serve` (run through the CLI)") }
            remote = try launcher.target(delayMs: delay)
        }
        var configuration = SpeculationConfiguration(budget: spec.budget, adaptive: spec.adaptive, maxRunAhead: spec.maxRunAhead)
        configuration.preferences.rates = c.runtime.rates
        if let o = spec.objective.flatMap(Objective.init(rawValue:)) { configuration.preferences.objective = o }
        if let cs = spec.cs { configuration.preferences.cs = CostSensitivity(cs) }
        let choice: DrafterChoice
        do {
            choice = spec.drafter == "auto" ? .auto : try DrafterChoice(parsing: spec.drafter.replacingOccurrences(of: "cross", with: "cross:\(c.models.crossDraft ?? "")"),
                                                                         draftModel: c.models.draft)
        } catch {
            throw CellSkipped(reason: "\(error)")
        }
        var options = RuntimeOptions(model: c.models.target, draftModel: c.models.draft, drafter: choice, remote: remote,
                                     threads: remote == nil ? c.runtime.threads : 1, configuration: configuration,
                                     targetPricePerHour: c.runtime.targetPricePerHour,
                                     profileDatabase: outDirectory.appendingPathComponent("profiles.sqlite").path, persistProfiles: true)
        options.extraDraftModels = [c.models.crossDraft].compactMap { $0 }
        let runtime = try Runtime(options: options, resolveModel: resolveModel)
        let items = try items(for: spec)
        progress(.cellStarted(index: index, count: count, spec, prompts: items.count))

        var records: [PromptRecord] = []
        var stats: SpeculativeStats? = nil
        var transport: TransportStats? = nil
        var use: ResourceUse? = nil
        for (i, item) in items.enumerated() {
            let prompt = try runtime.chatTokens([ChatMessage(role: "user", content: item.text)])
            var sampling = SamplingParameters.greedy
            if spec.sampled {
                sampling = .benchmarkSampled(seed: c.runtime.seed &+ UInt64(i))
            }
            let start = MonotonicClock.now
            var firstText: Double? = nil
            var committed = 0
            var firstTokens = 1
            var sawRounds = false
            let result = try runtime.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: c.runtime.maxTokens, sampling: sampling), onEvent: { event in
                switch event {
                case let .round(r):
                    sawRounds = true
                    committed += r.committed
                case let .piece(p):
                    if firstText == nil, !p.text.isEmpty {
                        firstText = MonotonicClock.millisecondsSince(start)
                        // Speculative rounds report what they committed; plain decoding gives one token per piece.
                        firstTokens = sawRounds ? max(1, committed) : 1
                    }
                case .finished: break
                }
                return true
            })
            let total = MonotonicClock.millisecondsSince(start)
            let generated = result.tokens.count
            let record = PromptRecord(set: item.set, index: item.index, promptTokens: prompt.count, generatedTokens: generated,
                                      firstTokens: min(firstTokens, generated), ttftMs: firstText ?? total, endToEndMs: total,
                                      outputHash: PromptRecord.hash(result.tokens), drafter: result.stats.speculative?.drafter ?? "none")
            records.append(record)
            if let sp = result.stats.speculative {
                if stats == nil { stats = SpeculativeStats(drafter: sp.drafter) }
                stats!.merge(sp)
                if let t = sp.remote {
                    var sum = transport ?? TransportStats()
                    sum.bytesSent += t.bytesSent
                    sum.bytesReceived += t.bytesReceived
                    sum.roundTrips += t.roundTrips
                    sum.roundTripMilliseconds += t.roundTripMilliseconds
                    sum.serverBusyMilliseconds += t.serverBusyMilliseconds
                    transport = sum
                }
                if let cost = sp.cost { use = (use ?? ResourceUse()) + cost.measured }
            }
            progress(.promptFinished(spec, index: i, record))
        }
        return CellResult(spec: spec, fingerprint: fingerprint, records: records, speculative: stats, transport: transport,
                          measuredUse: use, peakRSSMiB: ProcessResources.peakRSSMiB,
                          finished: ISO8601DateFormatter().string(from: Date()))
    }
}

/// Starts an `arbor serve` for remote cells and, per delay, a relay that adds it to each round
/// trip (`scripts/delay_relay.py`), and stops them when done.
public protocol RemoteTargetLauncher: AnyObject {
    func target(delayMs: Int) throws -> RemoteTarget
}
