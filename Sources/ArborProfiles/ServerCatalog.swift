import Foundation
import GRDB

/// One registered `arbor serve`: where it is and the token it wants.
public struct CatalogServer: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public var name: String
    public var host: String
    public var port: Int
    /// The server's auth token ("" when it has none). Stored in the user's own data directory.
    public var token: String

    public init(name: String, host: String, port: Int, token: String = "") {
        self.name = name
        self.host = host
        self.port = port
        self.token = token
    }

    public static let databaseTableName = "server"
}

/// Why the catalog could not do what was asked.
public enum ServerCatalogError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalid(String)
    case database(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalid(why): why
        case let .database(path, reason): "server catalog \(path): \(reason)"
        }
    }
}

/// The servers a user registered (the web UI's catalog, as AutoDraft's), in SQLite beside the
/// profiles (`<data dir>/servers.sqlite`). A file that is not a usable catalog is moved aside and
/// a fresh one started, with a warning; the catalog never stops the server.
public final class ServerCatalog: Sendable {
    public let path: String
    private let queue: DatabaseQueue

    /// Opens or creates the catalog at `path`; `warning` says when a broken file was moved aside.
    public static func openOrRecover(path: String) throws(ServerCatalogError) -> (catalog: ServerCatalog, warning: String?) {
        do {
            return (try ServerCatalog(path: path), nil)
        } catch {
            let aside = path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
            do {
                try FileManager.default.moveItem(atPath: path, toPath: aside)
            } catch {
                throw .database(path: path, reason: "unusable, and it could not be moved aside: \(error)")
            }
            return (try ServerCatalog(path: path), "server catalog \(path) was unusable; moved it to \(aside) and started a fresh one")
        }
    }

    public init(path: String) throws(ServerCatalogError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                    withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            queue = try DatabaseQueue(path: path, configuration: configuration)
            try queue.read { db in
                let report = try String?.fetchAll(db, sql: "PRAGMA quick_check").map { $0 ?? "" }
                guard report == ["ok"] else { throw ServerCatalogError.invalid("quick_check: \(report.prefix(3))") }
            }
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.create(table: "server") { t in
                    t.primaryKey("name", .text)
                    t.column("host", .text).notNull()
                    t.column("port", .integer).notNull()
                    t.column("token", .text).notNull()
                }
            }
            try migrator.migrate(queue)
            _ = try queue.read { db in try CatalogServer.fetchAll(db) }
        } catch let e as ServerCatalogError {
            throw e
        } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    public func all() throws(ServerCatalogError) -> [CatalogServer] {
        do { return try queue.read { db in try CatalogServer.order(Column("name")).fetchAll(db) } } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    public func server(named name: String) throws(ServerCatalogError) -> CatalogServer? {
        do { return try queue.read { db in try CatalogServer.fetchOne(db, key: name) } } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    /// Adds or replaces the server of that name, after checking its fields.
    public func save(_ s: CatalogServer) throws(ServerCatalogError) {
        let name = s.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 64 else { throw .invalid("a server needs a name of 1–64 characters") }
        guard !s.host.isEmpty, s.host.count <= 255, !s.host.contains(where: \.isWhitespace) else { throw .invalid("'\(s.host)' is not a host name or address") }
        guard (1...65535).contains(s.port) else { throw .invalid("port \(s.port) is not 1…65535") }
        var s = s
        s.name = name
        do { try queue.write { db in try s.save(db) } } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    /// Removes the server of that name; false when there was none.
    @discardableResult
    public func remove(named name: String) throws(ServerCatalogError) -> Bool {
        do { return try queue.write { db in try CatalogServer.deleteOne(db, key: name) } } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }
}
