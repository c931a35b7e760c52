import Foundation

/// A fresh, uniquely named directory under the system temporary directory, removed with
/// everything in it when the object goes away.
///
/// Swift may end an object's lifetime right after its last use, so keep the directory alive
/// while its files are used: prefer the scoped form,
///
/// ```swift
/// try TemporaryDirectory.with { dir in
///     let url = try writer.write(to: dir)
///     let file = try GGUFFile(path: url.path)
///     ...
/// }
/// ```
///
/// or hold it with `withExtendedLifetime(dir) { ... }`.
public final class TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }

    /// Create the directory (`<tmp>/<prefix>-<UUID>`).
    public init(prefix: String = "arbor-test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    /// The URL of `name` inside the directory (not created).
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Write `bytes` as `name` inside the directory, returning its URL.
    @discardableResult
    public func write(_ bytes: [UInt8], name: String) throws -> URL {
        let u = file(name)
        try Data(bytes).write(to: u)
        return u
    }

    /// Run `body` with a new directory that lives until `body` returns.
    public static func with<T>(prefix: String = "arbor-test", _ body: (TemporaryDirectory) throws -> T) throws -> T {
        let dir = try TemporaryDirectory(prefix: prefix)
        return try withExtendedLifetime(dir) { try body(dir) }
    }

    /// Run async `body` with a new directory that lives until `body` returns.
    public static func with<T>(
        prefix: String = "arbor-test", _ body: (TemporaryDirectory) async throws -> T
    ) async throws -> T {
        let dir = try TemporaryDirectory(prefix: prefix)
        defer { withExtendedLifetime(dir) {} }
        return try await body(dir)
    }
}
