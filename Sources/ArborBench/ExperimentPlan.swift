import ArborEngine
import Foundation

/// One cell of an experiment matrix: a setting run over one prompt set in one sampling mode.
/// Its `fingerprint` covers everything that changes its numbers, so a resumed run reuses a
/// finished cell only when nothing it depends on changed.
public struct CellSpec: Codable, Sendable, Hashable {
    public var id: String
    public var experiment: String
    public var kind: ExperimentConfig.Experiment.Kind
    /// A prompt set, or `mix` (the sets interleaved).
    public var set: String
    public var setting: String
    /// The drafter choice as `--drafter` takes it (`none`, `suffix`, `model`, `suffix+cross`...).
    public var drafter: String
    public var sampled: Bool
    public var budget: DraftBudget
    public var adaptive: Bool
    public var limit: Int
    public var delayMs: Int?
    public var ablationParameter: String?
    public var ablationValue: Int?
    public var objective: String?
    public var cs: Double?
    /// Most tokens a remote target may decode by itself per exchange: 0 for the remote baseline
    /// (one token per round trip); drafting cells keep Arbor's default, so the policy may let the
    /// server run ahead when drafting does not pay.
    public var maxRunAhead: Int = SpeculationConfiguration().maxRunAhead

    public var mode: String { sampled ? "sampled" : "greedy" }
    public var isRemote: Bool { delayMs != nil }

    /// The cell whose tokens/s this one's speedup divides by: plain decoding on the same prompts
    /// and mode (remote cells: one token per round trip at the same delay).
    public var baselineID: String {
        if let d = delayMs { return ExperimentPlan.cellID("remote-baseline", set, "none", sampled, delay: d) }
        return ExperimentPlan.cellID("baseline", set, "plain", sampled)
    }
}

/// The cells of a config, in run order: baselines first (every speedup needs one), then each
/// experiment's cells in file order.
public struct ExperimentPlan: Sendable {
    public var config: ExperimentConfig
    public var cells: [CellSpec]

    static func cellID(_ experiment: String, _ set: String, _ setting: String, _ sampled: Bool, delay: Int? = nil) -> String {
        "\(experiment)/\(set)/\(setting)/\(sampled ? "sampled" : "greedy")" + (delay.map { "@\($0)ms" } ?? "")
    }

    /// Expands `config`; `only` keeps the named experiments (and the baselines they need).
    public init(_ config: ExperimentConfig, only: Set<String>? = nil) {
        self.config = config
        let tree = DraftBudget(maxNodes: config.tree.maxNodes, maxDepth: config.tree.maxDepth, maxWidth: config.tree.maxWidth)
        let chain = DraftBudget.chain(config.tree.maxDepth)
        let modes = config.runtime.sampled ? [false, true] : [false]
        var cells: [CellSpec] = []
        var seen = Set<String>()
        func add(_ c: CellSpec) {
            if seen.insert(c.id).inserted { cells.append(c) }
        }
        func cell(_ e: ExperimentConfig.Experiment, set: String, setting: String, drafter: String, sampled: Bool,
                  budget: DraftBudget, delay: Int? = nil) -> CellSpec {
            CellSpec(id: Self.cellID(e.name, set, setting, sampled, delay: delay), experiment: e.name, kind: e.kind, set: set,
                     setting: setting, drafter: drafter, sampled: sampled, budget: budget, adaptive: config.tree.adaptive,
                     limit: e.limit ?? config.prompts.limit, delayMs: delay)
        }
        func baseline(set: String, sampled: Bool, limit: Int, delay: Int? = nil) -> CellSpec {
            let name = delay == nil ? "baseline" : "remote-baseline"
            var e = ExperimentConfig.Experiment(name: name, kind: delay == nil ? .baseline : .remote)
            e.limit = limit
            var c = cell(e, set: set, setting: delay == nil ? "plain" : "none", drafter: "none", sampled: sampled, budget: tree, delay: delay)
            if delay != nil { c.maxRunAhead = 0 }
            return c
        }
        let selected = config.experiments.filter { only == nil || only!.contains($0.name) }
        // Baselines first, for every (set, mode, limit) a local experiment uses.
        for e in selected {
            let sets = (e.kind == .routing && e.mixed == true) ? (e.sets ?? config.prompts.sets) + ["mix"] : (e.sets ?? config.prompts.sets)
            for set in sets {
                for sampled in modes {
                    if e.kind == .remote || (e.kind == .cost && e.delaysMs != nil) {
                        for d in e.delaysMs ?? [] { add(baseline(set: set, sampled: false, limit: e.limit ?? config.prompts.limit, delay: d)) }
                    } else {
                        add(baseline(set: set, sampled: sampled, limit: e.limit ?? config.prompts.limit))
                    }
                }
            }
        }
        for e in selected {
            let sets = e.sets ?? config.prompts.sets
            switch e.kind {
            case .baseline:
                break  // added above
            case .drafters:
                let shapes = e.shapes ?? ["chain", "tree"]
                for set in sets {
                    for sampled in modes {
                        for d in e.drafters ?? ["ngram", "suffix", "model"] where d != "none" {
                            for shape in shapes {
                                add(cell(e, set: set, setting: "\(d)-\(shape)", drafter: d, sampled: sampled, budget: shape == "chain" ? chain : tree))
                            }
                        }
                    }
                }
            case .routing:
                let candidates = e.drafters ?? ["ngram", "suffix", "model"]
                for set in sets + (e.mixed == true ? ["mix"] : []) {
                    for sampled in modes {
                        if set == "mix" {
                            // The single drafters on the same mix, to compare the router with.
                            for d in candidates where d != "auto" && d != "none" {
                                add(cell(e, set: set, setting: d, drafter: d, sampled: sampled, budget: tree))
                            }
                        }
                        add(cell(e, set: set, setting: "auto", drafter: "auto", sampled: sampled, budget: tree))
                    }
                }
            case .ablation:
                let d = e.drafter ?? "model"
                for set in sets {
                    for value in e.values ?? [] {
                        var b = tree
                        switch e.parameter {
                        case "max_depth": b = DraftBudget(maxNodes: max(tree.maxNodes, value), maxDepth: value, maxWidth: tree.maxWidth)
                        case "max_width": b = DraftBudget(maxNodes: tree.maxNodes, maxDepth: tree.maxDepth, maxWidth: value)
                        default: b = DraftBudget(maxNodes: value, maxDepth: tree.maxDepth, maxWidth: tree.maxWidth)
                        }
                        var c = cell(e, set: set, setting: "\(d) \(e.parameter ?? "max_nodes")=\(value)", drafter: d, sampled: false, budget: b)
                        c.ablationParameter = e.parameter ?? "max_nodes"
                        c.ablationValue = value
                        c.adaptive = false  // the swept value is the tree sent, every round
                        add(c)
                    }
                }
            case .remote:
                for delay in e.delaysMs ?? [] {
                    for set in sets {
                        for d in e.drafters ?? ["suffix", "model"] where d != "none" {
                            add(cell(e, set: set, setting: d, drafter: d, sampled: false, budget: tree, delay: delay))
                        }
                    }
                }
            case .cost:
                let d = e.drafters?.first ?? "model"
                for delay in e.delaysMs ?? [-1] {
                    for set in sets {
                        for cs in e.cs ?? [0] {
                            let value = cs > 1 ? cs / 100 : cs
                            var c = cell(e, set: set, setting: "\(d) cs=\(value)", drafter: d, sampled: false, budget: tree,
                                         delay: delay < 0 ? nil : delay)
                            c.objective = e.objective
                            c.cs = value
                            add(c)
                        }
                    }
                }
            }
        }
        self.cells = cells
    }
}
