import ArborBench
import ArborEngine
import Foundation
import Testing

@Suite("Experiment configs")
struct ExperimentConfigTests {
    static let yaml = """
        name: t
        models:
          target: smollm2-135m
          draft: ~
        runtime:
          threads: 1
          max_tokens: 16
        prompts:
          sets: [humaneval, mtbench]
          limit: 2
        tree: {max_nodes: 8, max_depth: 4, max_width: 2}
        experiments:
          baseline: {}
          drafters:
            drafters: [ngram, suffix]
            shapes: [chain, tree]
          ablation:
            drafter: suffix
            parameter: max_nodes
            values: [2, 4]
          remote:
            delays_ms: [20]
            drafters: [suffix]
          cost:
            objective: total_cost
            cs: [0, 50]
            drafters: [suffix]
        """

    @Test("a YAML config expands into cells, baselines first, ids unique")
    func expands() throws {
        let c = try ExperimentConfig.parse(yaml: Self.yaml, file: "t.yaml")
        #expect(c.models.target == "smollm2-135m" && c.models.draft == nil && c.models.crossDraft == "smollm2-135m")
        #expect(c.experiments.map(\.name) == ["baseline", "drafters", "ablation", "remote", "cost"])
        let plan = ExperimentPlan(c)
        let ids = plan.cells.map(\.id)
        #expect(Set(ids).count == ids.count)
        #expect(ids.prefix(2) == ["baseline/humaneval/plain/greedy", "baseline/mtbench/plain/greedy"])
        // 2 baselines + 2 remote baselines + 8 drafters + 4 ablation + 2 remote + 4 cost.
        #expect(plan.cells.count == 22)
        let chain = try #require(plan.cells.first { $0.id == "drafters/humaneval/suffix-chain/greedy" })
        #expect(chain.budget == .chain(4))
        let ablation = plan.cells.filter { $0.kind == .ablation }
        #expect(ablation.map(\.budget.maxNodes) == [2, 4, 2, 4] && ablation.allSatisfy { !$0.adaptive })
        let cost = plan.cells.filter { $0.kind == .cost }
        #expect(cost.map(\.cs) == [0, 0.5, 0, 0.5])  // AutoDraft's 0…100 scale read as 0…1
        let remote = try #require(plan.cells.first { $0.id == "remote/mtbench/suffix/greedy@20ms" })
        #expect(remote.baselineID == "remote-baseline/mtbench/none/greedy@20ms" && ids.contains(remote.baselineID))
        // Only some experiments: their baselines come along.
        let only = ExperimentPlan(c, only: ["drafters"]).cells.map(\.id)
        #expect(only.count == 10 && only.first == "baseline/humaneval/plain/greedy")
    }

    @Test("malformed configs name the file, the line and the field")
    func errors() {
        func error(_ yaml: String) -> ConfigError? {
            do {
                _ = try ExperimentConfig.parse(yaml: yaml, file: "bad.yaml")
                return nil
            } catch { return error }
        }
        let typo = error(Self.yaml.replacingOccurrences(of: "max_tokens: 16", with: "max_token: 16"))
        #expect(typo?.line == 7 && typo?.field == "runtime.max_token")
        #expect(typo?.description.hasPrefix("bad.yaml:7:") == true)
        let type = error(Self.yaml.replacingOccurrences(of: "values: [2, 4]", with: "values: [2, many]"))
        #expect(type?.field == "experiments.ablation.values.1" && type?.line == 20)
        let set = error(Self.yaml.replacingOccurrences(of: "sets: [humaneval, mtbench]", with: "sets: [humaneval, poetry]"))
        #expect(set?.field == "prompts.sets.1" && set?.line == 9)
        let kind = error(Self.yaml.replacingOccurrences(of: "  baseline: {}", with: "  warmup: {}"))
        #expect(kind?.field == "experiments.warmup.kind" && kind?.line == 13)
        let syntax = error("models:\n  target: [unclosed\n")
        #expect(syntax?.line != nil && syntax?.description.contains("invalid YAML") == true)
        let drafter = error(Self.yaml.replacingOccurrences(of: "drafters: [ngram, suffix]", with: "drafters: [ngram, model]"))
        #expect(drafter?.field == "experiments.drafters.drafters.1" && drafter?.problem.contains("models.draft") == true)
        #expect(error("") != nil)
    }

    @Test("the committed configs parse: benchmark.yaml and AutoDraft's two XML examples")
    func committed() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let yaml = try ExperimentConfig.load(yamlPath: root.appendingPathComponent("configs/benchmark.yaml").path)
        #expect(Set(yaml.experiments.map(\.kind)) == [.baseline, .drafters, .routing, .ablation, .remote])
        #expect(yaml.prompts.sets == ["humaneval", "mtbench", "sharegpt"] && yaml.prompts.limit == 20)
        let energy = try AutoDraftXML.load(path: root.appendingPathComponent("configs/autodraft/draft_energy_humaneval.xml").path)
        #expect(energy.prompts.sets == ["humaneval"] && energy.experiments.last?.objective == "draft_energy")
        let cost = try AutoDraftXML.load(path: root.appendingPathComponent("configs/autodraft/total_cost_mt_bench.xml").path)
        #expect(cost.prompts.sets == ["mtbench"] && cost.experiments.last?.objective == "total_cost")
        #expect(cost.runtime.rates == CostRates())
    }

    @Test("AutoDraft XML: tags map onto the config; a bad value names its tag and line")
    func xml() throws {
        let text = """
            <config>
              <models><BASE_MODEL_PATH>smollm2-135m</BASE_MODEL_PATH><DRAFT_MODEL_PATH></DRAFT_MODEL_PATH></models>
              <dataset><BENCHES_CSV>mt_bench,humaneval</BENCHES_CSV></dataset>
              <tree><PROPOSED_NODES>12</PROPOSED_NODES><PROPOSED_MAX_DEPTH>5</PROPOSED_MAX_DEPTH></tree>
              <objective>
                <OBJECTIVE_METRICS_CSV>total_cost,api_cost</OBJECTIVE_METRICS_CSV>
                <AUTODRAFT_CS_LIST>0 50 100</AUTODRAFT_CS_LIST>
                <TARGET_PER_HOUR_COST>2.5</TARGET_PER_HOUR_COST>
              </objective>
            </config>
            """
        let c = try AutoDraftXML.parse(Data(text.utf8), file: "x.xml")
        #expect(c.models.target == "smollm2-135m" && c.prompts.sets == ["mtbench", "humaneval"])
        #expect(c.tree.maxNodes == 12 && c.tree.maxDepth == 5 && c.runtime.rates.targetPerHour == 2.5)
        #expect(c.experiments.map(\.name) == ["baseline", "cost-total_cost", "cost-api_cost"])
        #expect(c.experiments[1].cs == [0, 0.5, 1])
        do {
            _ = try AutoDraftXML.parse(Data(text.replacingOccurrences(of: "0 50 100", with: "0 fast").utf8), file: "x.xml")
            Issue.record("a bad cs list was accepted")
        } catch {
            #expect(error.line == 7 && error.field == "AUTODRAFT_CS_LIST")
        }
        do {
            _ = try AutoDraftXML.parse(Data(text.replacingOccurrences(of: "<PROPOSED_NODES>12", with: "<PROPOSED_NODES>many").utf8), file: "x.xml")
            Issue.record("a bad number was accepted")
        } catch {
            #expect(error.line == 4 && error.field.hasSuffix("PROPOSED_NODES"))
        }
        do {
            _ = try AutoDraftXML.parse(Data("<config><models>".utf8), file: "x.xml")
            Issue.record("broken XML was accepted")
        } catch {
            #expect(error.description.hasPrefix("x.xml") && error.description.contains("XML"))
        }
    }

    @Test("percentiles are nearest-rank; a progress line has an ETA")
    func percentilesAndProgress() {
        let p = Percentiles((1...100).map(Double.init))
        #expect(p.p50 == 50 && p.p95 == 95 && p.p99 == 99)
        #expect(Percentiles([]).p50 == 0 && Percentiles([7]).p99 == 7)
        var lines: [String] = []
        let d = ProgressDisplay(total: 4, isTerminal: false) { lines.append($0) }
        #expect(d.eta(after: 0, elapsedSeconds: 0) == "?" && d.eta(after: 1, elapsedSeconds: 30) == "1m30s")
        d.advance(label: "cell a")
        #expect(lines.last?.hasPrefix("[1/4] 25%, ETA ") == true && lines.last?.hasSuffix(": cell a\n") == true)
        // Saved work (a resumed run) is progress but not rate: 1 unit worked in 30 s, 2 skipped,
        // 1 left → 30 s, not 10 s.
        #expect(d.eta(after: 3, skipped: 2, elapsedSeconds: 30) == "30s")
        #expect(d.eta(after: 2, skipped: 2, elapsedSeconds: 30) == "?")
    }
}
