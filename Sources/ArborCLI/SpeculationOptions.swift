import ArborEngine
import ArborRemote
import ArborRuntime
import ArborTokenizers
import ArgumentParser

/// Which drafter to speculate with, and the tree budget: shared by `generate` and `bench spec`.
struct SpeculationOptions: ParsableArguments {
    @Option(name: .customLong("drafter"), help: ArgumentHelp("Drafter: auto (the router picks per request from the prompt and what each drafter delivered before; the default of `generate` when no drafter or draft model is named), none, ngram, suffix, model (a draft model of the target's vocabulary), cross (a draft model of another vocabulary, drafting through text), or several joined by '+' (suffix+cross: the free drafter every round, the model when it falls short; trees merged). model and cross need --draft.", valueName: "name"))
    var drafter: String?
    @Option(name: .customLong("draft"), help: ArgumentHelp("Draft model (alias or GGUF path) of the target's vocabulary; implies --drafter model unless --drafter names another (arbor api: requests may still choose it).", valueName: "alias|path"))
    var draftModel: String?
    @Option(name: .customLong("max-nodes"), help: "Most drafted nodes per round.")
    var maxNodes: Int = 16
    @Option(name: .customLong("max-depth"), help: "Deepest drafted node per round.")
    var maxDepth: Int = 8
    @Option(name: .customLong("max-width"), help: "Most children per node (1: chains). Default: 1 for a draft model (each extra sibling costs it a draft step's compute), 4 for the free drafters.")
    var maxWidth: Int?
    @Flag(name: .customLong("fixed-tree"), help: "Always draft and send the full budget (no adaptive sizing).")
    var fixedTree = false
    @Option(name: .customLong("draft-vocab"), help: ArgumentHelp("VocabTrim: the draft model's head scores only the K tokens the target produces most (counts from `arbor profile vocab`); default: the whole vocabulary.", valueName: "K"))
    var draftVocabulary: Int?
    @Option(name: .customLong("max-run-ahead"), help: "Most tokens a remote target may be asked to decode by itself in one exchange, when drafting does not pay (0: never).")
    var maxRunAhead = 32
    @Flag(inversion: .prefixedNo, help: "Let a drafted round go past its planned depth while the draft is sure enough of its path that one more level pays (adaptive sizing, draft models; off by default: measured no cheaper on MT-bench).")
    var deepen = false

    /// The drafter named in effect (`--draft` alone means `model`).
    var drafterName: String {
        drafter ?? (draftModel != nil ? "model" : "none")
    }

    func validate() throws {
        do {
            _ = try DrafterChoice(parsing: drafterName, draftModel: draftModel)
        } catch {
            throw ValidationError("--drafter: \(error)")
        }
        guard maxNodes >= 1, maxDepth >= 1, (maxWidth ?? 1) >= 1 else { throw ValidationError("--max-nodes, --max-depth and --max-width must be at least 1") }
        guard (0...65535).contains(maxRunAhead) else { throw ValidationError("--max-run-ahead must be 0…65535") }
        if let k = draftVocabulary, k < 1 { throw ValidationError("--draft-vocab must be at least 1") }
    }

    var configuration: SpeculationConfiguration {
        // Chains for draft models: measured faster than width-4 trees both locally (HumanEval
        // 1.13× vs 1.01×) and with a remote target at 80 ms (15.6 vs 8.8 tok/s), because a CPU
        // draft model pays for every sibling it scores.
        let width = maxWidth ?? (choice.isModel ? 1 : 4)
        var c = SpeculationConfiguration(budget: DraftBudget(maxNodes: maxNodes, maxDepth: maxDepth, maxWidth: width), adaptive: !fixedTree,
                                         maxRunAhead: maxRunAhead)
        c.deepening = deepen
        return c
    }

    /// The drafter choice these options name.
    var choice: DrafterChoice {
        // validate() has parsed it already.
        (try? DrafterChoice(parsing: drafterName, draftModel: draftModel)) ?? .none
    }
}

extension RuntimeOptions {
    /// The runtime options of a command that composes a target and drafters (`generate`, `api`,
    /// `tradeoff`), from the option groups they share. `drafter` replaces `--drafter` where the
    /// command has its own default (`generate`: the router).
    init(model: ModelOptions, speculation: SpeculationOptions, drafter: DrafterChoice? = nil, remote: RemoteTarget?,
         threads: Int?, cost: CostOptions, profiles: ProfileOptions) {
        self.init(
            model: model.model, draftModel: speculation.draftModel, drafter: drafter ?? speculation.choice, remote: remote,
            threads: threads ?? ModelRegistryDefaults.threads, configuration: cost.apply(to: speculation.configuration),
            targetPricePerHour: cost.targetPricePerHour, profileDatabase: profiles.database, persistProfiles: !profiles.noProfile)
        draftVocabulary = speculation.draftVocabulary
    }
}
