import ArborEngine
import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Learned `CostProfile`s in a SQLite database (through GRDB), one row per `ProfileKey`, so a
/// profile outlives the process that learned it: load it when a request starts, save it when it
/// ends.
///
/// The schema is two tables, created by a `DatabaseMigrator` (the second, `token_count
/// (vocabulary, token, count)`, holds VocabTrim's counts of the tokens a target produces):
///
/// ```sql
/// CREATE TABLE profile (
///     id INTEGER PRIMARY KEY,
///     device TEXT NOT NULL, drafter TEXT NOT NULL, server TEXT NOT NULL, target TEXT NOT NULL,
///     updated_at DATETIME NOT NULL,   -- UTC, "YYYY-MM-DD HH:MM:SS.SSS"
///     rounds INTEGER NOT NULL,        -- CostProfile.rounds, for listing without decoding
///     data TEXT NOT NULL,             -- the CostProfile as JSON
///     UNIQUE (device, drafter, server, target))
/// ```
///
/// Several processes may use one file: every connection waits up to `busyTimeout` for a lock,
/// and writes are single immediate transactions. Stored rows are treated as input: a row that
/// does not decode or fails `CostProfile.validated()` is reported as
/// `ProfileStoreError.invalidProfile`, never trusted and never a crash.
public final class ProfileStore: Sendable {
    /// The database file.
    public let path: String
    private let queue: DatabaseQueue

    /// How long a connection waits for another one's lock before failing with `.database`.
    public static let busyTimeout: TimeInterval = 10

    /// The columns of the profile key, which together are unique.
    static let keyColumns = ["device", "drafter", "server", "target"]
    static let requiredColumns = ["id"] + keyColumns + ["updated_at", "rounds", "data"]

    /// Opens (creating if missing) the database at `path`, checks it with `PRAGMA quick_check`
    /// and brings its schema up to date. Missing parent directories are created.
    ///
    /// - Throws: `.unwritable` when the file or its directory cannot be written (nothing is
    ///   created), `.corrupt` or `.incompatibleSchema` for a file that is not a usable profile
    ///   database (left untouched; see `openOrRecover(path:)`), `.database` for anything else.
    public init(path: String) throws(ProfileStoreError) {
        self.path = path
        try Self.checkWritable(path: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(Self.busyTimeout)
        configuration.label = "ArborProfiles"
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw Self.classify(error, path: path)
        }
        do {
            try queue.read { db in
                let report = try String?.fetchAll(db, sql: "PRAGMA quick_check").map { $0 ?? "" }
                guard report == ["ok"] else {
                    throw IntegrityProblem(reason: "quick_check: " + report.prefix(3).joined(separator: "; "))
                }
                try Self.checkShape(db)
            }
            try migrate()
            try queue.read { db in try Self.checkShape(db, migrated: true) }
        } catch {
            throw Self.classify(error, path: path)
        }
    }

    /// Opens the database at `path` like `init(path:)`, but a file that is corrupt or whose
    /// schema is incompatible is moved aside as `<path>.corrupt-<unix time>` (with its journal,
    /// if any) and a fresh database created in its place.
    ///
    /// - Returns: the store, and a one-line warning for the user when a file was moved aside
    ///   (nil when the file was fine or missing).
    /// - Throws: `.unwritable` (run without persistence), `.recoveryFailed`, `.database`.
    public static func openOrRecover(
        path: String, now: Date = Date()
    ) throws(ProfileStoreError) -> (store: ProfileStore, warning: String?) {
        let problem: String
        do throws(ProfileStoreError) {
            return (try ProfileStore(path: path), nil)
        } catch let .corrupt(_, reason) {
            problem = "is corrupt (\(reason))"
        } catch let .incompatibleSchema(_, reason) {
            problem = "has an incompatible schema (\(reason))"
        }
        let moved = try moveAside(path: path, now: now)
        let store = try ProfileStore(path: path)
        let action = moved.map { "moved it to \($0) and started a fresh one" }
            ?? "another process moved it aside; using a fresh one"
        return (store, "profile database \(path) \(problem); \(action)")
    }

    // MARK: Profiles

    /// The stored profile for `key`, or nil if there is none.
    ///
    /// - Throws: `.invalidProfile` when the stored row does not decode or fails
    ///   `CostProfile.validated()` (the caller should start fresh; saving replaces the row),
    ///   `.database` when SQLite fails.
    public func load(_ key: ProfileKey) throws(ProfileStoreError) -> CostProfile? {
        let row = try read { db in
            try Row.fetchOne(
                db, sql: "SELECT id, data FROM profile WHERE device = ? AND drafter = ? AND server = ? AND target = ?",
                arguments: [key.device, key.drafter, key.server, key.target]
            )
        }
        guard let row else { return nil }
        let id = Int64.fromDatabaseValue(row[0] as DatabaseValue) ?? -1
        return try decode(row[1] as DatabaseValue, id: id, key: key)
    }

    /// Stores `profile` for `key`, replacing what was there (its id is kept).
    ///
    /// - Throws: `.unencodableProfile` when `profile` fails `CostProfile.validated()` (nothing is
    ///   written), `.database` when SQLite fails.
    public func save(_ key: ProfileKey, _ profile: CostProfile, at date: Date = Date()) throws(ProfileStoreError) {
        let json: String
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            json = String(decoding: try encoder.encode(try profile.validated()), as: UTF8.self)
        } catch {
            throw .unencodableProfile(path: path, key: key, reason: "\(error)")
        }
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO profile (device, drafter, server, target, updated_at, rounds, data)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (device, drafter, server, target)
                    DO UPDATE SET updated_at = excluded.updated_at, rounds = excluded.rounds, data = excluded.data
                    """,
                arguments: [key.device, key.drafter, key.server, key.target, date, profile.rounds, json]
            )
        }
    }

    /// One line per stored profile, by id. A row whose profile cannot be read is listed with
    /// `problem` set and no numbers.
    public func list() throws(ProfileStoreError) -> [ProfileSummary] {
        let rows = try read { db in
            try Row.fetchAll(db, sql: "SELECT id, device, drafter, server, target, updated_at, rounds, data FROM profile ORDER BY id")
        }
        return rows.map { row in
            let (id, key, rounds, updatedAt) = Self.header(row)
            do throws(ProfileStoreError) {
                let profile = try decode(row[7] as DatabaseValue, id: id, key: key)
                return ProfileSummary(id: id, key: key, rounds: rounds, updatedAt: updatedAt, profile: profile)
            } catch {
                var summary = ProfileSummary(id: id, key: key, rounds: rounds, updatedAt: updatedAt, profile: nil)
                if case let .invalidProfile(_, _, _, reason) = error { summary.problem = reason } else { summary.problem = "\(error)" }
                return summary
            }
        }
    }

    /// The whole stored profile with id `id`, or nil if there is no such row.
    ///
    /// - Throws: `.invalidProfile` when the row's profile cannot be read, `.database`.
    public func record(id: Int64) throws(ProfileStoreError) -> ProfileRecord? {
        let row = try read { db in
            try Row.fetchOne(
                db, sql: "SELECT id, device, drafter, server, target, updated_at, rounds, data FROM profile WHERE id = ?",
                arguments: [id]
            )
        }
        guard let row else { return nil }
        let (id, key, rounds, updatedAt) = Self.header(row)
        let profile = try decode(row[7] as DatabaseValue, id: id, key: key)
        return ProfileRecord(id: id, key: key, rounds: rounds, updatedAt: updatedAt, profile: profile)
    }

    /// The key stored under `id`, or nil if there is no such row.
    public func key(id: Int64) throws(ProfileStoreError) -> ProfileKey? {
        let row = try read { db in
            try Row.fetchOne(db, sql: "SELECT id, device, drafter, server, target, updated_at, rounds FROM profile WHERE id = ?", arguments: [id])
        }
        return row.map { Self.header($0).key }
    }

    /// Deletes the profile with id `id`; returns whether there was one.
    @discardableResult
    public func delete(id: Int64) throws(ProfileStoreError) -> Bool {
        try write { db in
            try db.execute(sql: "DELETE FROM profile WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    /// Deletes every stored profile; returns how many there were.
    @discardableResult
    public func deleteAll() throws(ProfileStoreError) -> Int {
        try write { db in
            let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM profile") ?? 0
            try db.execute(sql: "DELETE FROM profile")
            return count
        }
    }

    // MARK: Token counts (VocabTrim)

    /// Adds `counts` (token id → occurrences) to the stored counts of `vocabulary` (a
    /// vocabulary fingerprint, as hex).
    public func addTokenCounts(vocabulary: String, _ counts: [Int32: Int]) throws(ProfileStoreError) {
        try write { db in
            for (token, n) in counts where n > 0 {
                try db.execute(sql: """
                    INSERT INTO token_count (vocabulary, token, count) VALUES (?, ?, ?)
                    ON CONFLICT (vocabulary, token) DO UPDATE SET count = count + excluded.count
                    """, arguments: [vocabulary, Int(token), n])
            }
        }
    }

    /// The stored counts of `vocabulary`, most frequent first (ties by token id); rows that
    /// are not a token and a positive count are skipped.
    public func tokenCounts(vocabulary: String) throws(ProfileStoreError) -> [(token: Int32, count: Int)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT token, count FROM token_count WHERE vocabulary = ? ORDER BY count DESC, token ASC",
                             arguments: [vocabulary]).compactMap { row -> (Int32, Int)? in
                guard let t = Int.fromDatabaseValue(row[0] as DatabaseValue), let n = Int.fromDatabaseValue(row[1] as DatabaseValue),
                      let token = Int32(exactly: t), token >= 0, n > 0 else { return nil }
                return (token, n)
            }
        }
    }

    /// Deletes the counts of `vocabulary` (all vocabularies when nil); returns how many rows went.
    @discardableResult
    public func clearTokenCounts(vocabulary: String? = nil) throws(ProfileStoreError) -> Int {
        try write { db in
            if let vocabulary {
                try db.execute(sql: "DELETE FROM token_count WHERE vocabulary = ?", arguments: [vocabulary])
            } else {
                try db.execute(sql: "DELETE FROM token_count")
            }
            return db.changesCount
        }
    }

    // MARK: Router (`--drafter auto`)

    /// The router's statistics in `scope` (a target and device): per prompt bucket and drafter,
    /// how many requests it served and their mean and squared-deviation sum of tokens/s.
    public func routerArms(scope: String) throws(ProfileStoreError) -> [RouterArmRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT bucket, arm, count, mean, m2 FROM router_arm WHERE scope = ? ORDER BY bucket, arm",
                             arguments: [scope]).compactMap { row -> RouterArmRecord? in
                guard let bucket = String.fromDatabaseValue(row[0] as DatabaseValue), let arm = String.fromDatabaseValue(row[1] as DatabaseValue),
                      let n = Int.fromDatabaseValue(row[2] as DatabaseValue), n > 0,
                      let mean = Double.fromDatabaseValue(row[3] as DatabaseValue), mean.isFinite,
                      let m2 = Double.fromDatabaseValue(row[4] as DatabaseValue), m2.isFinite else { return nil }
                return RouterArmRecord(bucket: bucket, arm: arm, count: n, mean: mean, m2: m2)
            }
        }
    }

    /// Stores one arm's statistics (replacing what was there).
    public func saveRouterArm(scope: String, _ arm: RouterArmRecord) throws(ProfileStoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO router_arm (scope, bucket, arm, count, mean, m2) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (scope, bucket, arm) DO UPDATE SET count = excluded.count, mean = excluded.mean, m2 = excluded.m2
                """, arguments: [scope, arm.bucket, arm.arm, arm.count, arm.mean, arm.m2])
        }
    }

    /// Forgets the router's statistics (of one scope, or all); returns how many rows went.
    @discardableResult
    public func clearRouter(scope: String? = nil) throws(ProfileStoreError) -> Int {
        try write { db in
            if let scope {
                try db.execute(sql: "DELETE FROM router_arm WHERE scope = ?", arguments: [scope])
            } else {
                try db.execute(sql: "DELETE FROM router_arm")
            }
            return db.changesCount
        }
    }

    // MARK: Schema

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-profile") { db in
            // IF NOT EXISTS: a compatible table whose migration record was lost is adopted.
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS profile (
                    id INTEGER PRIMARY KEY,
                    device TEXT NOT NULL,
                    drafter TEXT NOT NULL,
                    server TEXT NOT NULL,
                    target TEXT NOT NULL,
                    updated_at DATETIME NOT NULL,
                    rounds INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    UNIQUE (device, drafter, server, target)
                )
                """)
        }
        migrator.registerMigration("v2-token-count") { db in
            // VocabTrim: how often each token of a vocabulary was produced (by a target, or in a
            // corpus tokenized with its tokenizer).
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS token_count (
                    vocabulary TEXT NOT NULL,
                    token INTEGER NOT NULL,
                    count INTEGER NOT NULL,
                    PRIMARY KEY (vocabulary, token)
                )
                """)
        }
        migrator.registerMigration("v3-router-arm") { db in
            // The drafter router's bandit: per scope (target, device), prompt bucket and drafter,
            // the requests served and Welford's running mean and M2 of their tokens/s.
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS router_arm (
                    scope TEXT NOT NULL,
                    bucket TEXT NOT NULL,
                    arm TEXT NOT NULL,
                    count INTEGER NOT NULL,
                    mean REAL NOT NULL,
                    m2 REAL NOT NULL,
                    PRIMARY KEY (scope, bucket, arm)
                )
                """)
        }
        return migrator
    }

    private func migrate() throws {
        let migrator = Self.migrator
        do {
            try migrator.migrate(queue)
        } catch {
            // Two processes creating the same file race to record the migration; the loser
            // finds it done.
            let done = (try? queue.read { db in try migrator.hasCompletedMigrations(db) }) ?? false
            if !done { throw error }
        }
    }

    /// Throws a `SchemaProblem` when `profile` exists but is not our table. Before migrating
    /// only a non-table or missing columns are checked (`CREATE TABLE IF NOT EXISTS` would keep
    /// them); after it, the table must exist with its unique key.
    private static func checkShape(_ db: Database, migrated: Bool = false) throws {
        let type = try String.fetchOne(db, sql: "SELECT type FROM sqlite_master WHERE name = 'profile' COLLATE NOCASE")
        guard let type else {
            if migrated { throw SchemaProblem(reason: "table profile is missing after migration") }
            return
        }
        guard type == "table" else { throw SchemaProblem(reason: "profile is a \(type), not a table") }
        let columns = Set(try db.columns(in: "profile").map { $0.name.lowercased() })
        let missing = requiredColumns.filter { !columns.contains($0) }
        guard missing.isEmpty else {
            throw SchemaProblem(reason: "table profile lacks column\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", "))")
        }
        let unique = try db.indexes(on: "profile").contains { index in
            index.isUnique && Set(index.columns.map { $0.lowercased() }) == Set(keyColumns)
        }
        guard unique else { throw SchemaProblem(reason: "table profile has no unique key on (device, drafter, server, target)") }
    }

    // MARK: Helpers

    private struct IntegrityProblem: Error { var reason: String }
    private struct SchemaProblem: Error { var reason: String }

    private func read<T>(_ body: (Database) throws -> T) throws(ProfileStoreError) -> T {
        do { return try queue.read(body) } catch { throw Self.classify(error, path: path) }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(ProfileStoreError) -> T {
        do { return try queue.write(body) } catch { throw Self.classify(error, path: path) }
    }

    /// Decodes and validates a stored profile.
    private func decode(_ value: DatabaseValue, id: Int64, key: ProfileKey) throws(ProfileStoreError) -> CostProfile {
        let data: Data
        switch value.storage {
        case let .string(s): data = Data(s.utf8)
        case let .blob(b): data = b
        default: throw .invalidProfile(path: path, id: id, key: key, reason: "its data is not JSON text")
        }
        let profile: CostProfile
        do {
            profile = try JSONDecoder().decode(CostProfile.self, from: data)
        } catch {
            throw .invalidProfile(path: path, id: id, key: key, reason: "its JSON does not decode (\(Self.describe(error)))")
        }
        do {
            return try profile.validated()
        } catch {
            throw .invalidProfile(path: path, id: id, key: key, reason: error.description)
        }
    }

    /// Reads the id, key, rounds and date of a row without trusting their types.
    private static func header(_ row: Row) -> (id: Int64, key: ProfileKey, rounds: Int, updatedAt: Date) {
        func text(_ i: Int) -> String { String.fromDatabaseValue(row[i] as DatabaseValue) ?? "?" }
        let id = Int64.fromDatabaseValue(row[0] as DatabaseValue) ?? -1
        let key = ProfileKey(device: text(1), drafter: text(2), server: text(3), target: text(4))
        let updatedAt = Date.fromDatabaseValue(row[5] as DatabaseValue) ?? Date(timeIntervalSince1970: 0)
        let rounds = Int.fromDatabaseValue(row[6] as DatabaseValue) ?? 0
        return (id, key, rounds, updatedAt)
    }

    /// Maps anything thrown while using the database to a `ProfileStoreError`.
    static func classify(_ error: any Error, path: String) -> ProfileStoreError {
        switch error {
        case let error as ProfileStoreError:
            return error
        case let problem as IntegrityProblem:
            return .corrupt(path: path, reason: problem.reason)
        case let problem as SchemaProblem:
            return .incompatibleSchema(path: path, reason: problem.reason)
        case let error as DatabaseError:
            let reason = error.message ?? "\(error.resultCode)"
            switch error.resultCode {
            case .SQLITE_NOTADB, .SQLITE_CORRUPT, .SQLITE_FORMAT:
                return .corrupt(path: path, reason: reason)
            case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
                return .unwritable(path: path, reason: reason)
            default:
                return .database(path: path, reason: reason)
            }
        default:
            return .database(path: path, reason: "\(error)")
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let DecodingError.dataCorrupted(context): context.debugDescription
        case let DecodingError.keyNotFound(key, _): "missing key \(key.stringValue)"
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: "\(error)"
        }
    }

    // MARK: Files

    /// Creates the parent directory if needed and checks that it (and the file, if present)
    /// can be written, so a read-only place fails up front with its path.
    private static func checkWritable(path: String) throws(ProfileStoreError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if let reason = makeDirectories(directory) {
            throw .unwritable(path: path, reason: reason)
        }
        if access(directory, W_OK) != 0 {
            throw .unwritable(path: path, reason: "directory \(directory) is not writable (\(lastError()))")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw .unwritable(path: path, reason: "it is a directory") }
            if access(path, W_OK) != 0 { throw .unwritable(path: path, reason: "the file is not writable (\(lastError()))") }
        }
    }

    /// `mkdir -p`; returns why it failed, or nil.
    private static func makeDirectories(_ directory: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            return isDirectory.boolValue ? nil : "\(directory) is not a directory"
        }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != directory, let reason = makeDirectories(parent) { return reason }
        if mkdir(directory, 0o755) != 0, errno != EEXIST {
            return "cannot create directory \(directory) (\(lastError()))"
        }
        return nil
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }

    /// Renames `path` (and its journal, WAL and shared-memory files, which must not meet a new
    /// database) to `<path>.corrupt-<unix time>[-n]`. Returns the new name, or nil when the file
    /// was already gone (another process moved it first).
    private static func moveAside(path: String, now: Date) throws(ProfileStoreError) -> String? {
        let fm = FileManager.default
        let base = "\(path).corrupt-\(Int(now.timeIntervalSince1970))"
        var destination = base
        var n = 1
        while fm.fileExists(atPath: destination) {
            destination = "\(base)-\(n)"
            n += 1
        }
        if rename(path, destination) != 0 {
            if errno == ENOENT { return nil }
            throw .recoveryFailed(path: path, reason: "rename to \(destination): \(lastError())")
        }
        for suffix in ["-journal", "-wal", "-shm"] where fm.fileExists(atPath: path + suffix) {
            if rename(path + suffix, destination + suffix) != 0 {
                // A stale journal would be replayed into the fresh database: remove it instead.
                if unlink(path + suffix) != 0, errno != ENOENT {
                    throw .recoveryFailed(path: path, reason: "cannot remove \(path + suffix): \(lastError())")
                }
            }
        }
        return destination
    }
}

/// A stored profile with its row's id, key and date (`arbor profile show`).
public struct ProfileRecord: Sendable, Equatable {
    /// The row id (stable across saves of the same key).
    public var id: Int64
    public var key: ProfileKey
    /// `profile.rounds` when it was saved.
    public var rounds: Int
    /// When it was last saved.
    public var updatedAt: Date
    public var profile: CostProfile

    public init(id: Int64, key: ProfileKey, rounds: Int, updatedAt: Date, profile: CostProfile) {
        self.id = id
        self.key = key
        self.rounds = rounds
        self.updatedAt = updatedAt
        self.profile = profile
    }
}

/// One stored profile in brief (`arbor profile list`): its key and a few numbers read from it.
public struct ProfileSummary: Codable, Sendable, Equatable {
    /// The row id (stable across saves of the same key).
    public var id: Int64
    public var key: ProfileKey
    /// Rounds the profile learned from.
    public var rounds: Int
    /// When it was last saved.
    public var updatedAt: Date
    /// Target compute for one token, ms (`targetMilliseconds(batch: 1)`); nil until the target
    /// has been timed.
    public var targetMillisecondsPerToken: Double?
    /// Round overhead, ms: the network fit's intercept (0 for a local target).
    public var roundOverheadMilliseconds: Double?
    /// Draft time per depth step at width 1, ms; nil until measured.
    public var draftStepMilliseconds: Double?
    /// Mean of the per-depth acceptance probabilities; nil until measured.
    public var meanDepthAcceptance: Double?
    /// Why the stored profile could not be read (the numbers are then nil).
    public var problem: String?

    /// A summary of `profile` (nil: unreadable, numbers left nil).
    public init(id: Int64, key: ProfileKey, rounds: Int, updatedAt: Date, profile: CostProfile?) {
        self.id = id
        self.key = key
        self.rounds = rounds
        self.updatedAt = updatedAt
        guard let profile else { return }
        targetMillisecondsPerToken = profile.knowsTarget ? profile.targetMilliseconds(batch: 1) : nil
        roundOverheadMilliseconds = profile.network.line.intercept
        let step = profile.draftStep(width: 1).milliseconds
        draftStepMilliseconds = step > 0 ? step : nil
        meanDepthAcceptance = profile.depthAcceptance.isEmpty
            ? nil : profile.depthAcceptance.reduce(0, +) / Double(profile.depthAcceptance.count)
    }

    enum CodingKeys: String, CodingKey {
        case id, key, rounds, updatedAt = "updated_at", targetMillisecondsPerToken = "target_ms_1"
        case roundOverheadMilliseconds = "overhead_ms", draftStepMilliseconds = "draft_step_ms"
        case meanDepthAcceptance = "mean_depth_acceptance", problem
    }
}

/// One drafter's record in one prompt bucket of the router.
public struct RouterArmRecord: Sendable, Equatable, Codable {
    public var bucket: String
    public var arm: String
    public var count: Int
    /// Mean tokens/s of the requests it served, and the sum of squared deviations (Welford).
    public var mean: Double
    public var m2: Double

    public init(bucket: String, arm: String, count: Int = 0, mean: Double = 0, m2: Double = 0) {
        self.bucket = bucket
        self.arm = arm
        self.count = count
        self.mean = mean
        self.m2 = m2
    }

    /// Adds one observation.
    public mutating func add(_ x: Double) {
        count += 1
        let d = x - mean
        mean += d / Double(count)
        m2 += d * (x - mean)
    }

    /// Standard deviation of the observations (0 below two).
    public var standardDeviation: Double { count > 1 ? (m2 / Double(count - 1)).squareRoot() : 0 }
}
