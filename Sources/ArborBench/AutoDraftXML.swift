import ArborEngine
import Foundation
import XMLCoder

/// AutoDraft's experiment file (its README, section 3: `<runtime>`, `<models>`, `<dataset>`,
/// `<algorithms>`, `<tree>`, `<objective>` with the same tag names), read into an
/// `ExperimentConfig`: the target alone as the baseline, then the cost-aware policy at each cs
/// value of `AUTODRAFT_CS_LIST` for each objective of `OBJECTIVE_METRICS_CSV`.
///
/// What maps where: `BASE_MODEL_PATH` and `DRAFT_MODEL_PATH` are Arbor model aliases (or GGUF
/// paths); `BENCHES_CSV` names prompt sets (`mt_bench` is `mtbench`); the four price knobs are the
/// cost model's rates; `PROPOSED_NODES` and `PROPOSED_MAX_DEPTH` are the tree budget. AutoDraft's
/// target runs on a server the user started; Arbor starts its own `arbor serve` for the run, with
/// `ADDED_RTT_MS` (Arbor's tag, in `<runtime>`: space-separated delays) added to each round trip,
/// or keeps the target in this process when that tag is absent. Tags that only make sense for
/// AutoDraft's GPUs (`DEVICE_MAP`, quantizations) are accepted and ignored.
public enum AutoDraftXML {
    struct File: Decodable {
        var runtime: Runtime?
        var models: Models?
        var dataset: Dataset?
        var algorithms: Algorithms?
        var tree: Tree?
        var objective: ObjectiveSection?
    }

    struct Runtime: Decodable {
        var TARGET_HOST: String?
        var TARGET_PORT: String?
        var DEVICE_MAP: String?
        var DRAFT_DEVICE_NAME: String?
        var SERVER_NAME: String?
        var ADDED_RTT_MS: String?
        var THREADS: Int?
        var MAX_NEW_TOKENS: Int?
        var NUM_PROMPTS: Int?
    }

    struct Models: Decodable {
        var BASE_MODEL_PATH: String?
        var DRAFT_MODEL_PATH: String?
        var TARGET_QUANTIZATION: String?
        var DRAFT_QUANTIZATION: String?
    }

    struct Dataset: Decodable { var BENCHES_CSV: String? }
    struct Algorithms: Decodable { var ENABLE_HYBRID_AUTODRAFT: Int? }

    struct Tree: Decodable {
        var PROPOSED_NODES: Int?
        var PROPOSED_MAX_DEPTH: Int?
        var PROPOSED_MAX_WIDTH: Int?
    }

    struct ObjectiveSection: Decodable {
        var OBJECTIVE_METRICS_CSV: String?
        var AUTODRAFT_CS_LIST: String?
        var TARGET_PER_HOUR_COST: Double?
        var DRAFT_ELECTRICITY_COST_PER_KWH: Double?
        var USER_COMM_COST_PER_GB: Double?
        var CLOUD_OUTBOUND_COST_PER_GB: Double?
    }

    /// Reads an AutoDraft XML file. Errors name the file, the line and the tag.
    public static func load(path: String) throws(ConfigError) -> ExperimentConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, field: "", problem: "cannot read the file")
        }
        return try parse(data, file: path)
    }

    public static func parse(_ data: Data, file: String) throws(ConfigError) -> ExperimentConfig {
        let text = String(decoding: data, as: UTF8.self)
        let parsed: File
        do {
            let decoder = XMLDecoder()
            decoder.trimValueWhitespaces = true
            parsed = try decoder.decode(File.self, from: data)
        } catch let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c), let DecodingError.dataCorrupted(c) {
            let tag = c.codingPath.last?.stringValue ?? ""
            if tag.isEmpty {
                // XMLCoder reports malformed XML with its line and column in the description.
                throw ConfigError(file: file, field: "", problem: "invalid XML: \(c.underlyingError.map { Self.describe($0, in: text) } ?? c.debugDescription)")
            }
            throw ConfigError(file: file, line: line(of: tag, in: text), field: c.codingPath.map(\.stringValue).joined(separator: "."),
                              problem: "expected a \(tag.hasSuffix("_CSV") || tag.hasSuffix("_LIST") || tag.hasSuffix("PATH") ? "text" : "number")")
        } catch {
            throw ConfigError(file: file, field: "", problem: "invalid XML: \(Self.describe(error, in: text))")
        }

        var config = ExperimentConfig()
        config.name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        func fail(_ tag: String, _ problem: String) -> ConfigError {
            ConfigError(file: file, line: line(of: tag, in: text), field: tag, problem: problem)
        }
        if let m = parsed.models {
            if let t = nonEmpty(m.BASE_MODEL_PATH) { config.models.target = t }
            if let d = nonEmpty(m.DRAFT_MODEL_PATH) { config.models.draft = d }
        }
        if let sets = nonEmpty(parsed.dataset?.BENCHES_CSV) {
            config.prompts.sets = sets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "").lowercased() }
        }
        if let r = parsed.runtime {
            if let t = r.THREADS { config.runtime.threads = t }
            if let n = r.MAX_NEW_TOKENS { config.runtime.maxTokens = n }
            if let n = r.NUM_PROMPTS { config.prompts.limit = n }
        }
        if let t = parsed.tree {
            if let n = t.PROPOSED_NODES { config.tree.maxNodes = n }
            if let d = t.PROPOSED_MAX_DEPTH { config.tree.maxDepth = d }
            if let w = t.PROPOSED_MAX_WIDTH { config.tree.maxWidth = w }
        }
        let o = parsed.objective
        config.runtime.targetPricePerHour = o?.TARGET_PER_HOUR_COST
        config.runtime.electricityPerKwh = o?.DRAFT_ELECTRICITY_COST_PER_KWH
        config.runtime.userCommPerGb = o?.USER_COMM_COST_PER_GB
        config.runtime.cloudOutboundPerGb = o?.CLOUD_OUTBOUND_COST_PER_GB

        let objectives = (nonEmpty(o?.OBJECTIVE_METRICS_CSV) ?? "total_cost").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for name in objectives where Objective(rawValue: name) == nil {
            throw fail("OBJECTIVE_METRICS_CSV", "unknown objective '\(name)' (known: \(Objective.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let csWords = (nonEmpty(o?.AUTODRAFT_CS_LIST) ?? "0").split(whereSeparator: { $0 == " " || $0 == "," })
        let cs = csWords.compactMap { Double($0) }
        guard cs.count == csWords.count, cs.allSatisfy({ (0...100).contains($0) }) else {
            throw fail("AUTODRAFT_CS_LIST", "expected space-separated cs values from 0 (speed first) to 100 (cost first)")
        }
        let delayWords = (nonEmpty(parsed.runtime?.ADDED_RTT_MS) ?? "").split(whereSeparator: { $0 == " " || $0 == "," })
        let delays = delayWords.compactMap { Int($0) }
        guard delays.count == delayWords.count, delays.allSatisfy({ $0 >= 0 }) else {
            throw fail("ADDED_RTT_MS", "expected space-separated delays in ms")
        }

        config.experiments = [ExperimentConfig.Experiment(name: "baseline", kind: .baseline)]
        for objective in objectives {
            var e = ExperimentConfig.Experiment(name: objectives.count == 1 ? "cost" : "cost-\(objective)", kind: .cost)
            e.objective = objective
            // AutoDraft writes cs from 0 to 100; Arbor's knob runs from 0 to 1.
            e.cs = cs.map { $0 > 1 ? $0 / 100 : $0 }
            e.delaysMs = delays.isEmpty ? nil : delays
            e.drafters = [config.models.draft == nil ? "suffix" : "model"]
            config.experiments.append(e)
        }
        try config.validate(file: file) { field in
            let tag = ["prompts.sets": "BENCHES_CSV", "runtime.threads": "THREADS", "tree": "PROPOSED_NODES"].first { field.hasPrefix($0.key) }?.value
            return tag.flatMap { t in line(of: t, in: text).map { (line: $0, column: 1) } }
        }
        return config
    }

    /// A parser error as words, with the line where the parser stopped when it says.
    static func describe(_ error: any Error, in text: String) -> String {
        let ns = error as NSError
        if ns.domain == "NSXMLParserErrorDomain" {
            // libxml2's codes: the common ones in words (a comment holding "--" is a classic).
            let words: [Int: String] = [4: "the document is empty", 5: "the document ends too early", 76: "a tag is not closed",
                                        73: "a tag is not closed", 80: "a comment is malformed (it may not contain \"--\")",
                                        9: "an invalid character", 41: "an attribute is malformed", 68: "a name is malformed"]
            return words[ns.code] ?? "parser error \(ns.code)"
        }
        return "\(error)"
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let t = s?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else { return nil }
        return t
    }

    /// The 1-based line of a tag's first opening in `text`.
    static func line(of tag: String, in text: String) -> Int? {
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where l.contains("<\(tag)>") || l.contains("<\(tag) ") {
            return i + 1
        }
        return nil
    }
}
