#if canImport(Glibc)
import Glibc
#endif
import ArborProfiles
import ArborBench
import ArborEngine
import ArborRemote
import ArborStore
import ArgumentParser
import Foundation

/// `arbor bench run --config FILE`: an experiment matrix from YAML (or AutoDraft's XML), resumable,
/// with results as JSON and CSV and a report with charts.
struct BenchRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the experiments of a config file (YAML, or AutoDraft's XML); write results, charts and report.md.",
        discussion: """
            Experiments: baseline (the target alone), drafters (each drafter, chain and tree), \
            routing (--drafter auto; with `mixed: true` also the sets interleaved), ablation (over \
            max_nodes, max_depth or max_width), remote (an `arbor serve` this command starts, \
            with each delay added to every round trip by scripts/delay_relay.py), cost (the \
            cost-aware policy at each cs value). See configs/benchmark.yaml.

            Each finished cell is saved in <out>/cells/ at once; running the same command again \
            skips cells already done (unless --fresh). Then <out>/results.json and results.csv \
            are written and scripts/bench_report.py draws the charts and report.md.
            """)

    @Option(help: ArgumentHelp("Experiment config: .yaml/.yml, or AutoDraft's .xml.", valueName: "file"))
    var config: String
    @Option(help: "Output directory (default: <data dir>/bench/<config name>).")
    var out: String?
    @Option(name: .customLong("experiments"), help: "Run only these experiments (comma-separated names); the results and report still include the saved cells of the others.")
    var experiments: String?
    @Option(help: "Override the config's prompts per set (every experiment), e.g. for a quick run.")
    var limit: Int?
    @Option(name: .customLong("max-tokens"), help: "Override the config's tokens per prompt.")
    var maxTokens: Int?
    @Flag(help: "Forget saved cells and run everything again.")
    var fresh = false
    @Flag(name: .customLong("dry-run"), help: "Print the cells and exit.")
    var dryRun = false
    @Flag(name: .customLong("no-report"), help: "Do not draw charts or write report.md.")
    var noReport = false

    func run() async throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        var parsed: ExperimentConfig
        do {
            parsed = config.lowercased().hasSuffix(".xml") ? try AutoDraftXML.load(path: config) : try ExperimentConfig.load(yamlPath: config)
        } catch {
            // The error names the file, line and field; usage text would only hide it.
            StandardStreams.error("error: \(error)\n")
            throw ExitCode(2)
        }
        if let limit {
            parsed.prompts.limit = limit
            for i in parsed.experiments.indices { parsed.experiments[i].limit = parsed.experiments[i].limit.map { min($0, limit) } }
        }
        if let maxTokens { parsed.runtime.maxTokens = maxTokens }
        let only = experiments.map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
        if let only {
            let names = Set(parsed.experiments.map(\.name))
            for n in only where !names.contains(n) {
                throw ValidationError("--experiments: '\(n)' is not in \(config) (it has \(parsed.experiments.map(\.name).joined(separator: ", ")))")
            }
        }
        let plan = ExperimentPlan(parsed, only: only)
        if dryRun {
            for c in plan.cells { print(c.id) }
            return
        }
        let outDir = URL(fileURLWithPath: out ?? ArborPaths.dataDirectory().appendingPathComponent("bench").appendingPathComponent(parsed.name).path)
        if fresh { try? FileManager.default.removeItem(at: outDir.appendingPathComponent("cells")) }
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)

        let store = PromptStore()
        let runner = ExperimentRunner(plan: plan, outDirectory: outDir,
                                      prompts: { set, limit in try store.items(set, limit: limit).map(\.userMessage) },
                                      resolveModel: { try ModelOptions.resolve($0) })
        let launcher = ServeLauncher(model: parsed.models.target)
        defer { launcher.stop() }
        runner.remoteTargets = launcher
        // Ctrl-C or a kill: the servers and relays this run started go too, and the saved cells stay.
        let interrupts = [Int32(SIGINT), Int32(SIGTERM)].map { (number: Int32) -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                launcher.stop()
                StandardStreams.error("\ninterrupted: finished cells are saved in \(outDir.appendingPathComponent("cells").path); "
                                      + "the same command resumes\n")
                Glibc.exit(130)
            }
            source.resume()
            return source
        }
        defer { interrupts.forEach { $0.cancel() } }
        let totalPrompts = plan.cells.reduce(0) { $0 + ($1.set == "mix" ? $1.limit * parsed.prompts.sets.count : $1.limit) }
        let display = ProgressDisplay(total: totalPrompts)
        runner.progress = { event in
            switch event {
            case let .cellStarted(i, n, spec, _):
                display.show("cell \(i + 1)/\(n) \(spec.id)")
            case let .promptFinished(spec, _, _):
                display.advance(label: spec.id)
            case let .cellFinished(i, n, cell, resumed):
                if resumed { display.skip(cell.records.count, label: cell.spec.id) }
                display.log(String(format: "%@ cell %d/%d %@: %.1f tok/s over %d prompts", resumed ? "saved" : "done", i + 1, n,
                                   cell.spec.id, cell.tokensPerSecond, cell.records.count))
            case let .cellSkipped(i, n, spec, reason):
                display.skip(spec.limit, label: spec.id)
                display.log("skipped cell \(i + 1)/\(n) \(spec.id): \(reason)")
            }
        }
        let cells = try runner.run()
        display.finish()

        // Every experiment of the config: with --experiments, the others' saved cells are reported too.
        let full = ExperimentPlan(parsed)
        let results = BenchResults(config: config, plan: full, cells: runner.cells(of: full, ran: cells))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try encoder.encode(results).write(to: outDir.appendingPathComponent("results.json"))
        try results.table.csv.write(to: outDir.appendingPathComponent("results.csv"), atomically: true, encoding: .utf8)
        print(results.table.text())
        print("results: \(outDir.appendingPathComponent("results.json").path)")
        if !noReport { Self.drawReport(outDir) }
    }

    /// A script of the project's `scripts/` directory: in the current directory's checkout, or in
    /// the checkout this binary was built in (`.build/<triple>/release/arbor`).
    static func projectScript(_ name: String) -> URL? {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let checkoutOfBinary = (0..<4).reduce(exe) { url, _ in url.deletingLastPathComponent() }
        return [URL(fileURLWithPath: FileManager.default.currentDirectoryPath), checkoutOfBinary]
            .map { $0.appendingPathComponent("scripts").appendingPathComponent(name) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Runs scripts/bench_report.py on the results.
    static func drawReport(_ dir: URL) {
        guard let script = projectScript("bench_report.py") else {
            StandardStreams.error("scripts/bench_report.py not found; charts and report.md not drawn\n")
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script.path, dir.appendingPathComponent("results.json").path, dir.path]
        do {
            try p.run()
            p.waitUntilExit()
            if p.terminationStatus == 0 {
                print("report: \(dir.appendingPathComponent("report.md").path)")
            } else {
                StandardStreams.error("bench_report.py failed (status \(p.terminationStatus)); results are saved\n")
            }
        } catch {
            StandardStreams.error("cannot run python3 for the report: \(error)\n")
        }
    }
}

/// Starts `arbor serve` (this binary, one thread) on a free port the first time a remote cell
/// needs it, and per delay a `scripts/delay_relay.py` in front of it; stops them all at the end.
final class ServeLauncher: RemoteTargetLauncher, @unchecked Sendable {
    let model: String
    /// `stop` may come from a signal handler's thread while a cell asks for a target.
    private let lock = NSLock()
    private var server: (process: Process, port: Int)?
    private var relays: [Int: (process: Process, port: Int)] = [:]

    init(model: String) { self.model = model }

    func target(delayMs: Int) throws -> RemoteTarget {
        lock.lock()
        defer { lock.unlock() }
        let port = try serverPort()
        if delayMs == 0 { return RemoteTarget(host: "127.0.0.1", port: port) }
        if let r = relays[delayMs] { return RemoteTarget(host: "127.0.0.1", port: r.port) }
        guard let script = BenchRunCommand.projectScript("delay_relay.py")?.path else {
            throw ValidationError("remote cells with a delay need scripts/delay_relay.py (run from the checkout)")
        }
        let (process, line) = try Self.start("/usr/bin/env", ["python3", script, "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:\(port)",
                                                              "--delay-ms", "\(delayMs)"], readyPrefix: "relay ready")
        // "relay ready 127.0.0.1:PORT -> ..."
        guard let listen = line.split(separator: " ").dropFirst(2).first, let p = listen.split(separator: ":").last.flatMap({ Int($0) }) else {
            process.terminate()
            throw ValidationError("delay relay said '\(line)'")
        }
        relays[delayMs] = (process, p)
        return RemoteTarget(host: "127.0.0.1", port: p)
    }

    private func serverPort() throws -> Int {
        if let server { return server.port }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let (process, line) = try Self.start(exe, ["serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--log-level", "warning"],
                                             readyPrefix: "arbor serve: listening on")
        guard let p = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
            process.terminate()
            throw ValidationError("arbor serve said '\(line)'")
        }
        server = (process, p)
        return p
    }

    /// SIGTERM, then SIGKILL after 3 s if it is still running (a server finishing its sessions
    /// must not keep the benchmark from ending).
    static func end(_ p: Process) {
        guard p.isRunning else { return }
        p.terminate()
        let deadline = Date().addingTimeInterval(3)
        while p.isRunning, Date() < deadline { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// Starts a process and waits (up to 10 minutes: a first model load) for its ready line on stdout.
    static func start(_ exe: String, _ args: [String], readyPrefix: String) throws -> (Process, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.standardError
        try p.run()
        var buffer = Data()
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }  // the process ended
            buffer.append(chunk)
            let text = String(decoding: buffer, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix(readyPrefix) }) {
                // Keep draining its output so it never blocks on a full pipe.
                let handle = pipe.fileHandleForReading
                Thread.detachNewThread { while !handle.availableData.isEmpty {} }
                return (p, String(line))
            }
        }
        p.terminate()
        throw ValidationError("\(args.first ?? exe) did not become ready: \(String(decoding: buffer, as: UTF8.self).suffix(400))")
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        for r in relays.values { Self.end(r.process) }
        if let s = server { Self.end(s.process) }
        relays = [:]
        server = nil
    }
}
