import ArborEngine
import ArborProfiles
import Foundation

/// Loads the profile of one (device, drafter, server, target) and stores what a policy learned.
/// Problems with the database are reported through `warn` and never stop a generation: a corrupt
/// file is moved aside and a fresh profile used.
public final class ProfilePersistence: @unchecked Sendable {
    public let key: ProfileKey
    /// The database (nil when profiles are off or it could not be opened).
    public let store: ProfileStore?
    private let warn: @Sendable (String) -> Void

    /// `database`: the SQLite file (default `<data dir>/profiles.sqlite`); `enabled` false starts
    /// from empty profiles and stores nothing.
    public convenience init(database: String?, enabled: Bool, drafter: String, server: String, target: String,
                            warn: @escaping @Sendable (String) -> Void) {
        let key = ProfileKey(device: ProfileKey.thisDevice, drafter: drafter, server: server, target: target)
        self.init(key: key, store: enabled ? Self.open(database, warn: warn) : nil, warn: warn)
    }

    init(key: ProfileKey, store: ProfileStore?, warn: @escaping @Sendable (String) -> Void) {
        self.key = key
        self.store = store
        self.warn = warn
    }

    /// The same database, another key (another drafter of the same runtime).
    public func with(drafter: String) -> ProfilePersistence {
        var k = key
        k.drafter = drafter
        return ProfilePersistence(key: k, store: store, warn: warn)
    }

    static func open(_ database: String?, warn: @Sendable (String) -> Void) -> ProfileStore? {
        let path = database ?? ArborPaths.dataDirectory().appendingPathComponent("profiles.sqlite").path
        do {
            let (store, warning) = try ProfileStore.openOrRecover(path: path)
            if let warning { warn(warning) }
            return store
        } catch {
            warn("cannot use the profile database (\(error)); running without a stored profile")
            return nil
        }
    }

    /// The stored profile, or an empty one.
    public func load() -> CostProfile {
        guard let store else { return CostProfile() }
        do {
            return try store.load(key) ?? CostProfile()
        } catch {
            warn("the stored profile for \(key.drafter) → \(key.target) on \(key.server) is unusable (\(error)); starting fresh")
            return CostProfile()
        }
    }

    public func save(_ profile: CostProfile) {
        guard let store else { return }
        do { try store.save(key, profile) } catch {
            warn("could not store the learned profile: \(error)")
        }
    }
}
