import ArborStore
import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--model <alias|path>`, shared by the commands that load a model.
///
/// A known alias is pulled on first use (progress on stderr); anything else must be the path of
/// an existing GGUF file. For a second model option (such as a draft model) declare the option
/// in the command and call `ModelOptions.resolve(_:)` on its value.
struct ModelOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Model alias (\(ModelCatalog.standard.aliases.joined(separator: ", "))) or path to a GGUF file.",
            valueName: "alias|path"
        )
    )
    var model: String = ModelOptions.defaultTarget

    /// The default target model (the default draft is qwen2.5-coder-0.5b).
    static let defaultTarget = "qwen2.5-coder-1.5b"

    /// The local GGUF path of `--model`, pulling a known alias if it is not cached yet.
    func resolve() throws -> String {
        try Self.resolve(model)
    }

    /// The local GGUF path for an alias or path, pulling a known alias if needed. Throws a
    /// `ModelStoreError` naming the known aliases for an unknown alias or a missing file.
    static func resolve(_ aliasOrPath: String) throws -> String {
        let progress = StderrProgress()
        defer { progress.end() }
        return try ModelStore().resolve(aliasOrPath, progress: progress.handler)
    }
}

/// Shows `PullProgress` on stderr: one line rewritten in place on a terminal, plain lines (byte
/// progress every 10%) otherwise, so logs stay short.
final class StderrProgress: @unchecked Sendable {
    private let lock = NSLock()
    private let isTerminal = isatty(STDERR_FILENO) != 0
    /// A partial line is on screen (terminal mode).
    private var lineOpen = false
    private var lastDraw = Date.distantPast
    /// Last decile printed for byte events (plain mode), per model and phase.
    private var lastDecile: (key: String, decile: Int64) = ("", -1)

    var handler: PullProgressHandler {
        { [self] event in self.show(event) }
    }

    func show(_ event: PullProgress) {
        lock.lock()
        defer { lock.unlock() }
        if isTerminal {
            let isBytes = event.fraction != nil
            let complete = (event.fraction ?? 0) >= 1
            // Byte counters redraw at most ten times a second; every other event draws at once.
            if isBytes, !complete, Date().timeIntervalSince(lastDraw) < 0.1 { return }
            lastDraw = Date()
            if case .finished = event {
                write("\r\u{1B}[K" + event.message + "\n")
                lineOpen = false
            } else {
                write("\r\u{1B}[K" + event.message)
                lineOpen = true
            }
        } else {
            let key: String
            let bytes: Int64, total: Int64
            switch event {
            case let .assembling(alias, b, t): (key, bytes, total) = (alias + " assembling", b, t)
            case let .verifying(alias, b, t): (key, bytes, total) = (alias + " verifying", b, t)
            default:
                write(event.message + "\n")
                return
            }
            let decile = total > 0 ? bytes * 10 / total : 10
            if key == lastDecile.key, decile <= lastDecile.decile { return }
            lastDecile = (key, decile)
            write(event.message + "\n")
        }
    }

    /// Ends an open progress line so what follows starts on a fresh line.
    func end() {
        lock.lock()
        defer { lock.unlock() }
        if lineOpen {
            write("\n")
            lineOpen = false
        }
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
