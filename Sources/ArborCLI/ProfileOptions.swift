import ArborEngine
import ArborProfiles
import ArgumentParser
import Foundation

/// Where learned cost profiles live, for commands that speculate.
struct ProfileOptions: ParsableArguments {
    @Option(name: .customLong("profile-db"), help: "Profile database (default: <data dir>/profiles.sqlite; data dir: $ARBOR_DATA_DIR, $XDG_DATA_HOME/arbor or ~/.local/share/arbor).")
    var database: String?
    @Flag(name: .customLong("no-profile"), help: "Start from an empty profile and store nothing.")
    var noProfile = false

    static func dataDirectory() -> URL { ArborPaths.dataDirectory() }
}

/// Loads the profile of one (device, drafter, server, target) at start and stores what the
/// policy learned at the end. Problems with the database are reported once on stderr and never
/// stop a generation: a corrupt file is moved aside and a fresh profile used.
final class ProfilePersistence {
    let key: ProfileKey
    private var store: ProfileStore?

    init(options: ProfileOptions, drafter: String, server: String, target: String) {
        key = ProfileKey(device: ProfileKey.thisDevice, drafter: drafter, server: server, target: target)
        guard !options.noProfile else { return }
        let path = options.database ?? ArborPaths.dataDirectory().appendingPathComponent("profiles.sqlite").path
        do {
            let (store, warning) = try ProfileStore.openOrRecover(path: path)
            if let warning { StandardStreams.error("warning: \(warning)\n") }
            self.store = store
        } catch {
            StandardStreams.error("warning: cannot use the profile database (\(error)); running without a stored profile\n")
        }
    }

    /// The stored profile, or an empty one.
    func load() -> CostProfile {
        guard let store else { return CostProfile() }
        do {
            return try store.load(key) ?? CostProfile()
        } catch {
            StandardStreams.error("warning: the stored profile for \(key.drafter) → \(key.target) on \(key.server) is unusable (\(error)); starting fresh\n")
            return CostProfile()
        }
    }

    func save(_ profile: CostProfile) {
        guard let store else { return }
        do { try store.save(key, profile) } catch {
            StandardStreams.error("warning: could not store the learned profile: \(error)\n")
        }
    }
}
