import ArborBench
import ArborEngine
import ArborTestSupport
import Foundation
import Testing

@Suite("Experiment runner: cells, baselines, resuming")
struct ExperimentRunnerTests {
    static let prompts = [
        "the cat in the hat sat on the mat; the cat in the hat",
        "one two three four, one two three four, one two",
        "a b c d e f g a b c d e f g a b c",
    ]

    func config(target: String) throws -> ExperimentConfig {
        try ExperimentConfig.parse(yaml: """
            models: {target: "\(target)", draft: ~, cross_draft: ~}
            runtime: {threads: 1, max_tokens: 12}
            prompts: {sets: [humaneval, mtbench], limit: 3}
            experiments:
              baseline: {}
              drafters: {drafters: [ngram, suffix], shapes: [chain]}
              routing: {drafters: [ngram, suffix], mixed: true}
            """, file: "test.yaml")
    }

    @Test("every cell runs through the runtime; greedy speculative cells equal plain decoding; a rerun reads saved cells back")
    func runsAndResumes() throws {
        try TemporaryDirectory.with { dir in
            let target = try TinyModel(.qwen2).write(to: dir)
            let plan = ExperimentPlan(try config(target: target))
            let out = dir.file("out")
            func runner() -> ExperimentRunner {
                ExperimentRunner(plan: plan, outDirectory: out, prompts: { _, limit in Array(Self.prompts.prefix(limit)) },
                                 resolveModel: { $0 })
            }
            var ran: [String] = [], resumed: [String] = []
            let first = runner()
            first.progress = { if case let .cellFinished(_, _, cell, wasSaved) = $0 { wasSaved ? resumed.append(cell.spec.id) : ran.append(cell.spec.id) } }
            let cells = try first.run()
            #expect(cells.count == plan.cells.count && ran.count == plan.cells.count && resumed.isEmpty)
            let results = BenchResults(config: "test.yaml", plan: plan, cells: cells)
            for c in results.cells where c.kind != "baseline" {
                #expect(c.identicalToPlain == c.prompts, "\(c.id)")
                #expect(c.speedup != nil && c.tokensPerSecond > 0)
            }
            let mix = try #require(results.cells.first { $0.id == "routing/mix/auto/greedy" })
            #expect(mix.prompts == 6 && mix.bySet?.keys.sorted() == ["humaneval", "mtbench"])
            #expect(mix.routerChoices.map { $0.values.reduce(0, +) } == 6)
            #expect(results.table.rows.count == cells.count)

            // An interruption: one cell's file is gone, another is torn. Only those two run again.
            let files = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("cells").path).sorted()
            #expect(files.count == plan.cells.count)
            try FileManager.default.removeItem(at: out.appendingPathComponent("cells").appendingPathComponent(files[0]))
            try Data("{\"spec\":".utf8).write(to: out.appendingPathComponent("cells").appendingPathComponent(files[1]))
            ran = []
            resumed = []
            let second = runner()
            second.progress = { if case let .cellFinished(_, _, cell, wasSaved) = $0 { wasSaved ? resumed.append(cell.spec.id) : ran.append(cell.spec.id) } }
            let again = try second.run()
            #expect(again.count == plan.cells.count && ran.count == 2 && resumed.count == plan.cells.count - 2)
            // Greedy outputs do not depend on the run: the rerun cells match the first run's.
            for (a, b) in zip(cells, again) { #expect(a.records.map(\.outputHash) == b.records.map(\.outputHash), "\(a.spec.id)") }
            // A run of one experiment still reports every cell measured before.
            let partial = ExperimentRunner(plan: ExperimentPlan(try config(target: target), only: ["routing"]), outDirectory: out,
                                           prompts: { _, limit in Array(Self.prompts.prefix(limit)) }, resolveModel: { $0 })
            #expect(partial.plan.cells.count < plan.cells.count)
            #expect(partial.cells(of: plan, ran: []).map(\.spec.id) == plan.cells.map(\.id))
        }
    }

    @Test("remote cells without a launcher are skipped with a reason, not run locally")
    func remoteNeedsLauncher() throws {
        try TemporaryDirectory.with { dir in
            let target = try TinyModel(.qwen2).write(to: dir)
            let c = try ExperimentConfig.parse(yaml: """
                models: {target: "\(target)", draft: ~, cross_draft: ~}
                runtime: {threads: 1, max_tokens: 4}
                prompts: {sets: [mtbench], limit: 1}
                experiments:
                  remote: {delays_ms: [20], drafters: [suffix]}
                """, file: "r.yaml")
            let runner = ExperimentRunner(plan: ExperimentPlan(c), outDirectory: dir.file("o"),
                                          prompts: { _, _ in ["hello"] }, resolveModel: { $0 })
            var skipped: [String] = []
            runner.progress = { if case let .cellSkipped(_, _, spec, reason) = $0 { skipped.append(spec.id + ": " + reason) } }
            #expect(try runner.run().isEmpty)
            #expect(skipped.count == 2 && skipped.allSatisfy { $0.contains("arbor serve") })
        }
    }
}
