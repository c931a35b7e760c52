/// Why the profile store could not do what was asked; every case names the database file.
public enum ProfileStoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The database (or its directory) cannot be created or written: a read-only or missing
    /// directory, a read-only file, a path through a regular file. Run without persistence.
    case unwritable(path: String, reason: String)
    /// The file is not a usable SQLite database (not a database, truncated, failing
    /// `PRAGMA quick_check`). `ProfileStore.openOrRecover(path:)` moves such a file aside.
    case corrupt(path: String, reason: String)
    /// The file is a SQLite database, but its `profile` table is not ours (other columns, no
    /// unique key over the profile key). `openOrRecover` moves such a file aside too.
    case incompatibleSchema(path: String, reason: String)
    /// A stored row cannot be used: its JSON does not decode as a `CostProfile`, or the profile
    /// fails `CostProfile.validated()` (another version, wrong shapes, non-finite numbers). The
    /// store itself is fine; saving a new profile for the key replaces the row.
    case invalidProfile(path: String, id: Int64, key: ProfileKey, reason: String)
    /// A profile to save fails `CostProfile.validated()` or cannot be encoded; nothing was written.
    case unencodableProfile(path: String, key: ProfileKey, reason: String)
    /// Any other SQLite failure (locked past the busy timeout, I/O error, …).
    case database(path: String, reason: String)
    /// A corrupt file could not be moved aside.
    case recoveryFailed(path: String, reason: String)

    /// The database file the error is about.
    public var path: String {
        switch self {
        case let .unwritable(path, _), let .corrupt(path, _), let .incompatibleSchema(path, _),
             let .invalidProfile(path, _, _, _), let .unencodableProfile(path, _, _), let .database(path, _),
             let .recoveryFailed(path, _):
            path
        }
    }

    public var description: String {
        switch self {
        case let .unwritable(path, reason):
            "cannot write the profile database \(path): \(reason)"
        case let .corrupt(path, reason):
            "profile database \(path) is corrupt (\(reason))"
        case let .incompatibleSchema(path, reason):
            "profile database \(path) has an incompatible schema (\(reason))"
        case let .invalidProfile(path, id, key, reason):
            "stored profile \(id) (\(key)) in \(path) is unusable: \(reason)"
        case let .unencodableProfile(path, key, reason):
            "cannot store the profile for \(key) in \(path): \(reason)"
        case let .database(path, reason):
            "profile database \(path): \(reason)"
        case let .recoveryFailed(path, reason):
            "cannot move the corrupt profile database \(path) aside: \(reason)"
        }
    }
}
