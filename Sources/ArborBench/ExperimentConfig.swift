import ArborEngine
import Foundation
import Yams

/// An experiment matrix: the models, the prompt sets, the drafters and the named experiments
/// `arbor bench run --config` runs (SpecDecode's `configs/benchmark.yaml`, in Arbor's terms).
///
/// Written as YAML (`configs/benchmark.yaml`) or as AutoDraft's XML (`AutoDraftXML`); both become
/// this one value, and `ExperimentPlan` expands it into cells.
public struct ExperimentConfig: Codable, Sendable, Equatable {
    public var name: String = "arbor-benchmark"
    public var models = Models()
    public var runtime = RuntimeSection()
    public var prompts = Prompts()
    public var tree = Tree()
    /// Experiments by name, run in file order (YAML mappings keep their order).
    public var experiments: [Experiment] = []

    public init() {}

    public struct Models: Codable, Sendable, Equatable {
        /// Target model (alias or GGUF path).
        public var target = "qwen2.5-coder-1.5b"
        /// Draft model of the target's vocabulary (the `model` drafter).
        public var draft: String? = "qwen2.5-coder-0.5b"
        /// Draft model of another vocabulary (the `cross` drafter).
        public var crossDraft: String? = "smollm2-135m"
        public init() {}
    }

    public struct RuntimeSection: Codable, Sendable, Equatable {
        public var threads = 2
        public var maxTokens = 128
        /// Also run every local cell sampled (temperature 0.7, top-p 0.9, one seed per prompt).
        public var sampled = false
        public var seed: UInt64 = 1234
        /// Prices for the cost columns (nil: AutoDraft's example values, `CostRates()`).
        public var targetPricePerHour: Double?
        public var electricityPerKwh: Double?
        public var userCommPerGb: Double?
        public var cloudOutboundPerGb: Double?
        public init() {}

        /// The prices as the cost model's rates.
        public var rates: CostRates {
            let d = CostRates()
            return CostRates(targetPerHour: targetPricePerHour ?? d.targetPerHour, electricityPerKWh: electricityPerKwh ?? d.electricityPerKWh,
                             userCommPerGB: userCommPerGb ?? d.userCommPerGB, cloudOutboundPerGB: cloudOutboundPerGb ?? d.cloudOutboundPerGB)
        }
    }

    public struct Prompts: Codable, Sendable, Equatable {
        public var sets = ["humaneval", "mtbench", "sharegpt"]
        /// First N prompts of each set.
        public var limit = 20
        public init() {}
    }

    public struct Tree: Codable, Sendable, Equatable {
        public var maxNodes = 8
        public var maxDepth = 6
        public var maxWidth = 3
        /// Size trees from measured profiles each round (false: the full budget every round).
        public var adaptive = true
        public init() {}
    }

    /// One named experiment; `kind` says which (defaults to the name when that is a kind).
    public struct Experiment: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable, CaseIterable {
            case baseline, drafters, routing, ablation, remote, cost
        }

        public var name: String
        public var kind: Kind
        /// `drafters`, `remote`, `routing` (the candidates), `cost`: drafter choices (`ngram`,
        /// `suffix`, `model`, `cross`, `suffix+cross`, `none`, `auto`).
        public var drafters: [String]?
        /// `drafters`: `chain` (width 1) and/or `tree` (the tree budget).
        public var shapes: [String]?
        /// `ablation`: the drafter, the parameter (`max_nodes`, `max_depth`, `max_width`) and its values.
        public var drafter: String?
        public var parameter: String?
        public var values: [Int]?
        /// `remote`, `cost`: added round-trip delays (ms) through `scripts/delay_relay.py`; empty
        /// or absent in `cost` means a local target.
        public var delaysMs: [Int]?
        /// `cost`: the objective and the cs values of the sweep.
        public var objective: String?
        public var cs: [Double]?
        /// `routing`: also run the sets interleaved as one mixed workload.
        public var mixed: Bool?
        /// Prompt sets and limit for this experiment only.
        public var sets: [String]?
        public var limit: Int?

        public init(name: String, kind: Kind) {
            self.name = name
            self.kind = kind
        }
    }
}

// MARK: - Errors

/// A config that cannot be used, with where in which file.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// Dotted path of the field (`experiments.ablation.values`), empty for the whole file.
    public var field: String
    public var problem: String

    public init(file: String, line: Int? = nil, column: Int? = nil, field: String, problem: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.problem = problem
    }

    public var description: String {
        var at = file
        if let line { at += ":\(line)" }
        if let column, line != nil { at += ":\(column)" }
        return field.isEmpty ? "\(at): \(problem)" : "\(at): \(field): \(problem)"
    }
}

// MARK: - YAML

extension ExperimentConfig {
    /// Keys each section may hold; anything else is a typo worth an error, not a silent default.
    static let sectionKeys: [String: Set<String>] = [
        "": ["name", "models", "runtime", "prompts", "tree", "experiments"],
        "models": ["target", "draft", "cross_draft"],
        "runtime": ["threads", "max_tokens", "sampled", "seed", "target_price_per_hour", "electricity_per_kwh", "user_comm_per_gb",
                    "cloud_outbound_per_gb"],
        "prompts": ["sets", "limit"],
        "tree": ["max_nodes", "max_depth", "max_width", "adaptive"],
        "experiment": ["kind", "drafters", "shapes", "drafter", "parameter", "values", "delays_ms", "objective", "cs",
                       "mixed", "sets", "limit"],
    ]

    /// Reads a YAML config. Errors name the file, the line and the field.
    public static func load(yamlPath path: String) throws(ConfigError) -> ExperimentConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, field: "", problem: "cannot read the file")
        }
        return try parse(yaml: String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses YAML text (`file` names it in errors).
    public static func parse(yaml: String, file: String) throws(ConfigError) -> ExperimentConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else { throw ConfigError(file: file, field: "", problem: "the file is empty") }
            root = node
        } catch let e as ConfigError {
            throw e
        } catch let e as YamlError {
            throw Self.error(e, file: file)
        } catch {
            throw ConfigError(file: file, field: "", problem: "\(error)")
        }
        guard let top = root.mapping else { throw ConfigError(file: file, line: root.mark?.line, field: "", problem: "expected a mapping of sections") }
        try checkKeys(top, section: "", path: "", file: file)
        var config = ExperimentConfig()
        let decoder = YAMLDecoder()
        func decode<T: Decodable>(_ key: String, _ type: T.Type) throws(ConfigError) -> T? {
            guard let node = top[key] else { return nil }
            if let mapping = node.mapping { try checkKeys(mapping, section: key, path: key, file: file) }
            do {
                return try decoder.decode(T.self, from: node, userInfo: [:])
            } catch let e as DecodingError {
                throw Self.error(e, in: node, prefix: key, file: file)
            } catch {
                throw ConfigError(file: file, line: node.mark?.line, field: key, problem: "\(error)")
            }
        }
        if let name = try decode("name", String.self) { config.name = name }
        if let models = try decode("models", Models.self) { config.models = models }
        if let runtime = try decode("runtime", RuntimeSection.self) { config.runtime = runtime }
        if let prompts = try decode("prompts", Prompts.self) { config.prompts = prompts }
        if let tree = try decode("tree", Tree.self) { config.tree = tree }
        if let experiments = top["experiments"] {
            guard let mapping = experiments.mapping else {
                throw ConfigError(file: file, line: experiments.mark?.line, field: "experiments", problem: "expected a mapping of experiment names to settings")
            }
            for (keyNode, value) in mapping {
                let name = keyNode.string ?? ""
                let path = "experiments.\(name)"
                var body = value
                if value.scalar != nil && (value.string ?? "").isEmpty || value == Node("~") { body = Node([(Node, Node)]()) }
                guard let fields = body.mapping else {
                    throw ConfigError(file: file, line: value.mark?.line, field: path, problem: "expected a mapping of settings (or {})")
                }
                try checkKeys(fields, section: "experiment", path: path, file: file)
                let kindText = fields["kind"]?.string ?? name
                guard let kind = Experiment.Kind(rawValue: kindText) else {
                    throw ConfigError(file: file, line: (fields["kind"] ?? keyNode).mark?.line, field: path + ".kind",
                                      problem: "unknown experiment kind '\(kindText)' (known: \(Experiment.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                do {
                    var e = try decoder.decode(ExperimentFields.self, from: body, userInfo: [:]).experiment(name: name, kind: kind)
                    e.name = name
                    config.experiments.append(e)
                } catch let e as DecodingError {
                    throw Self.error(e, in: body, prefix: path, file: file)
                } catch {
                    throw ConfigError(file: file, line: value.mark?.line, field: path, problem: "\(error)")
                }
            }
        }
        try config.validate(file: file) { path in Self.mark(of: path, in: root).map { ($0.line, $0.column) } }
        return config
    }

    /// The experiment's fields as written (its name and kind come from the mapping key).
    struct ExperimentFields: Decodable {
        var kind: String?
        var drafters: [String]?
        var shapes: [String]?
        var drafter: String?
        var parameter: String?
        var values: [Int]?
        var delaysMs: [Int]?
        var objective: String?
        var cs: [Double]?
        var mixed: Bool?
        var sets: [String]?
        var limit: Int?

        enum CodingKeys: String, CodingKey {
            case kind, drafters, shapes, drafter, parameter, values, delaysMs = "delays_ms", objective, cs, mixed, sets, limit
        }

        func experiment(name: String, kind: Experiment.Kind) -> Experiment {
            var e = Experiment(name: name, kind: kind)
            (e.drafters, e.shapes, e.drafter, e.parameter, e.values) = (drafters, shapes, drafter, parameter, values)
            (e.delaysMs, e.objective, e.cs, e.mixed, e.sets, e.limit) = (delaysMs, objective, cs, mixed, sets, limit)
            return e
        }
    }

    static func checkKeys(_ mapping: Node.Mapping, section: String, path: String, file: String) throws(ConfigError) {
        guard let allowed = sectionKeys[section] else { return }
        for (key, _) in mapping {
            let k = key.string ?? ""
            if !allowed.contains(k) {
                throw ConfigError(file: file, line: key.mark?.line, column: key.mark?.column, field: path.isEmpty ? k : "\(path).\(k)",
                                  problem: "unknown field (known here: \(allowed.sorted().joined(separator: ", ")))")
            }
        }
    }

    /// The node at a dotted path (`experiments.ablation.values.2`), for its line.
    static func mark(of path: String, in root: Node) -> Mark? {
        var node = root
        var best = root.mark
        for part in path.split(separator: ".") {
            if let m = node.mapping, let next = m[String(part)] {
                node = next
            } else if let s = node.sequence, let i = Int(part), s.indices.contains(i) {
                node = s[i]
            } else {
                break
            }
            best = node.mark ?? best
        }
        return best
    }

    static func error(_ e: YamlError, file: String) -> ConfigError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError(file: file, line: mark.line, column: mark.column, field: "", problem: "invalid YAML: \(what)")
        default:
            return ConfigError(file: file, field: "", problem: "invalid YAML: \(e)")
        }
    }

    static func error(_ e: DecodingError, in node: Node, prefix: String, file: String) -> ConfigError {
        func path(_ keys: [any CodingKey]) -> String {
            ([prefix] + keys.map { $0.intValue.map(String.init) ?? $0.stringValue }).filter { !$0.isEmpty }.joined(separator: ".")
        }
        func line(_ keys: [any CodingKey]) -> Mark? {
            let relative = keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return mark(of: relative, in: node)
        }
        switch e {
        case let .typeMismatch(type, c), let .valueNotFound(type, c):
            let m = line(c.codingPath)
            return ConfigError(file: file, line: m?.line, column: m?.column, field: path(c.codingPath), problem: "expected \(Self.describe(type))")
        case let .keyNotFound(key, c):
            let m = line(c.codingPath)
            return ConfigError(file: file, line: m?.line, field: path(c.codingPath + [key]), problem: "missing")
        case let .dataCorrupted(c):
            let m = line(c.codingPath)
            return ConfigError(file: file, line: m?.line, column: m?.column, field: path(c.codingPath), problem: c.debugDescription)
        @unknown default:
            return ConfigError(file: file, line: node.mark?.line, field: prefix, problem: "\(e)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is String.Type: "a string"
        case is [Int].Type: "a list of integers"
        case is [String].Type: "a list of strings"
        case is [Double].Type: "a list of numbers"
        default: "\(type)"
        }
    }
}

// MARK: - Validation

extension ExperimentConfig {
    static let knownSets: Set<String> = ["humaneval", "mtbench", "sharegpt"]
    static let ablationParameters: Set<String> = ["max_nodes", "max_depth", "max_width"]

    /// Checks values that decode but make no sense. `mark` finds a field's position for the message.
    func validate(file: String, mark: (String) -> (line: Int, column: Int)? = { _ in nil }) throws(ConfigError) {
        func fail(_ field: String, _ problem: String) -> ConfigError {
            let m = mark(field)
            return ConfigError(file: file, line: m?.line, column: m?.column, field: field, problem: problem)
        }
        guard runtime.threads >= 1 else { throw fail("runtime.threads", "must be at least 1") }
        guard runtime.maxTokens >= 1 else { throw fail("runtime.max_tokens", "must be at least 1") }
        guard prompts.limit >= 1 else { throw fail("prompts.limit", "must be at least 1") }
        guard !prompts.sets.isEmpty else { throw fail("prompts.sets", "needs at least one prompt set") }
        for (i, s) in prompts.sets.enumerated() where !Self.knownSets.contains(s) {
            throw fail("prompts.sets.\(i)", "unknown prompt set '\(s)' (known: \(Self.knownSets.sorted().joined(separator: ", ")))")
        }
        guard tree.maxNodes >= 1, tree.maxDepth >= 1, tree.maxWidth >= 1 else { throw fail("tree", "budgets must be at least 1") }
        guard !experiments.isEmpty else { throw fail("experiments", "names no experiment") }
        for e in experiments {
            let p = "experiments.\(e.name)"
            for (i, d) in (e.drafters ?? []).enumerated() {
                guard Self.isDrafter(d) else { throw fail("\(p).drafters.\(i)", "unknown drafter '\(d)' (ngram, suffix, model, cross, none, auto, or several joined by +)") }
                if d.split(separator: "+").contains("model"), models.draft == nil { throw fail("\(p).drafters.\(i)", "'model' needs models.draft") }
                if d.split(separator: "+").contains("cross"), models.crossDraft == nil { throw fail("\(p).drafters.\(i)", "'cross' needs models.cross_draft") }
            }
            for (i, s) in (e.shapes ?? []).enumerated() where s != "chain" && s != "tree" {
                throw fail("\(p).shapes.\(i)", "unknown shape '\(s)' (chain, tree)")
            }
            for (i, s) in (e.sets ?? []).enumerated() where !Self.knownSets.contains(s) {
                throw fail("\(p).sets.\(i)", "unknown prompt set '\(s)'")
            }
            if let l = e.limit, l < 1 { throw fail("\(p).limit", "must be at least 1") }
            switch e.kind {
            case .ablation:
                guard let param = e.parameter, Self.ablationParameters.contains(param) else {
                    throw fail("\(p).parameter", "needs one of \(Self.ablationParameters.sorted().joined(separator: ", "))")
                }
                guard let values = e.values, !values.isEmpty, values.allSatisfy({ $0 >= 1 }) else {
                    throw fail("\(p).values", "needs a list of positive integers")
                }
                guard let d = e.drafter, Self.isDrafter(d), d != "none", d != "auto" else { throw fail("\(p).drafter", "needs a drafter (ngram, suffix, model, cross)") }
            case .remote:
                guard let delays = e.delaysMs, !delays.isEmpty, delays.allSatisfy({ $0 >= 0 }) else {
                    throw fail("\(p).delays_ms", "needs a list of delays in ms (0 or more)")
                }
            case .cost:
                guard let o = e.objective, Objective(rawValue: o) != nil else {
                    throw fail("\(p).objective", "needs one of \(Objective.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                guard let cs = e.cs, !cs.isEmpty, cs.allSatisfy({ (0...100).contains($0) }) else {
                    throw fail("\(p).cs", "needs a list of cs values (0…1, or 0…100 as AutoDraft writes them)")
                }
            case .baseline, .drafters, .routing: break
            }
        }
    }

    static func isDrafter(_ d: String) -> Bool {
        let parts = d.split(separator: "+", omittingEmptySubsequences: false)
        if parts.count == 1 { return ["none", "auto", "ngram", "suffix", "model", "cross"].contains(d) }
        return parts.allSatisfy { ["ngram", "suffix", "model", "cross"].contains($0) }
    }
}

extension ExperimentConfig.Models {
    enum CodingKeys: String, CodingKey { case target, draft, crossDraft = "cross_draft" }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        target = try c.decodeIfPresent(String.self, forKey: .target) ?? target
        draft = try c.decodeIfPresent(String.self, forKey: .draft) ?? (c.contains(.draft) ? nil : draft)
        crossDraft = try c.decodeIfPresent(String.self, forKey: .crossDraft) ?? (c.contains(.crossDraft) ? nil : crossDraft)
    }
}

extension ExperimentConfig.RuntimeSection {
    enum CodingKeys: String, CodingKey {
        case threads, maxTokens = "max_tokens", sampled, seed, targetPricePerHour = "target_price_per_hour"
        case electricityPerKwh = "electricity_per_kwh", userCommPerGb = "user_comm_per_gb", cloudOutboundPerGb = "cloud_outbound_per_gb"
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? threads
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? maxTokens
        sampled = try c.decodeIfPresent(Bool.self, forKey: .sampled) ?? sampled
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        targetPricePerHour = try c.decodeIfPresent(Double.self, forKey: .targetPricePerHour)
        electricityPerKwh = try c.decodeIfPresent(Double.self, forKey: .electricityPerKwh)
        userCommPerGb = try c.decodeIfPresent(Double.self, forKey: .userCommPerGb)
        cloudOutboundPerGb = try c.decodeIfPresent(Double.self, forKey: .cloudOutboundPerGb)
    }
}

extension ExperimentConfig.Prompts {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sets = try c.decodeIfPresent([String].self, forKey: .sets) ?? sets
        limit = try c.decodeIfPresent(Int.self, forKey: .limit) ?? limit
    }
}

extension ExperimentConfig.Tree {
    enum CodingKeys: String, CodingKey { case maxNodes = "max_nodes", maxDepth = "max_depth", maxWidth = "max_width", adaptive }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxNodes = try c.decodeIfPresent(Int.self, forKey: .maxNodes) ?? maxNodes
        maxDepth = try c.decodeIfPresent(Int.self, forKey: .maxDepth) ?? maxDepth
        maxWidth = try c.decodeIfPresent(Int.self, forKey: .maxWidth) ?? maxWidth
        adaptive = try c.decodeIfPresent(Bool.self, forKey: .adaptive) ?? adaptive
    }
}

extension ExperimentConfig.Experiment {
    enum CodingKeys: String, CodingKey {
        case name, kind, drafters, shapes, drafter, parameter, values, delaysMs = "delays_ms", objective, cs, mixed, sets, limit
    }
}
