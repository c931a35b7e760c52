import Foundation

/// Where Arbor keeps data that should outlive a process (learned cost profiles), as opposed to
/// the model cache (`ArborStore`), which can always be downloaded again.
public enum ArborPaths {
    /// The file name of the profile database inside the data directory.
    public static let profileDatabaseName = "profiles.sqlite"

    /// `$ARBOR_DATA_DIR`, else `$XDG_DATA_HOME/arbor`, else `~/.local/share/arbor`.
    ///
    /// The directory is created when `create` is true (and left alone if that fails: opening a
    /// store there then reports a `ProfileStoreError.unwritable` naming the path).
    /// - Parameters:
    ///   - environment: the variables to read (the process's own by default).
    ///   - create: whether to create the directory if it is missing.
    public static func dataDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment, create: Bool = true
    ) -> URL {
        let url: URL
        if let dir = environment["ARBOR_DATA_DIR"], !dir.isEmpty {
            url = URL(fileURLWithPath: expandTilde(dir, environment: environment), isDirectory: true)
        } else if let data = environment["XDG_DATA_HOME"], data.hasPrefix("/") {
            // XDG: a relative value is invalid and must be ignored.
            url = URL(fileURLWithPath: data, isDirectory: true).appendingPathComponent("arbor", isDirectory: true)
        } else {
            url = URL(fileURLWithPath: home(environment), isDirectory: true)
                .appendingPathComponent(".local", isDirectory: true)
                .appendingPathComponent("share", isDirectory: true)
                .appendingPathComponent("arbor", isDirectory: true)
        }
        if create {
            try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        }
        return url
    }

    /// The default profile database: `<data directory>/profiles.sqlite`.
    public static func profileDatabase(
        environment: [String: String] = ProcessInfo.processInfo.environment, create: Bool = true
    ) -> URL {
        dataDirectory(environment: environment, create: create).appendingPathComponent(profileDatabaseName)
    }

    private static func home(_ environment: [String: String]) -> String {
        environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    }

    private static func expandTilde(_ path: String, environment: [String: String]) -> String {
        if path == "~" { return home(environment) }
        if path.hasPrefix("~/") { return home(environment) + path.dropFirst(1) }
        return path
    }
}
