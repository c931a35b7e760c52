import ArborEngine
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long run with an ETA: one line redrawn in place on a terminal, plain lines
/// otherwise (logs and CI stay readable).
public final class ProgressDisplay {
    public let total: Int
    public let isTerminal: Bool
    private let write: (String) -> Void
    private let start = MonotonicClock.now
    private var done = 0
    /// Units finished without work in this process (a resumed run's saved cells): they count
    /// toward progress but not toward the rate, or a resumed run would promise an ETA of seconds.
    private var skipped = 0
    private var lineOpen = false

    /// `total` units of work; `write` gets the text (stderr by default).
    public init(total: Int, isTerminal: Bool = isatty(STDERR_FILENO) != 0,
                write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.total = max(total, 1)
        self.isTerminal = isTerminal
        self.write = write
    }

    /// Remaining time from the mean time per unit worked so far ("?" before the first);
    /// `skipped` of the `done` units took no time (saved, not run).
    public func eta(after done: Int, skipped: Int = 0, elapsedSeconds: Double) -> String {
        let worked = done - skipped
        guard worked > 0 else { return "?" }
        let left = elapsedSeconds / Double(worked) * Double(max(total - done, 0))
        return Self.duration(left)
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : t >= 60 ? String(format: "%dm%02ds", t / 60, t % 60) : "\(t)s"
    }

    /// One more unit finished; `label` says what is running now.
    public func advance(by n: Int = 1, label: String) {
        done = min(done + n, total)
        show(label)
    }

    /// `n` units already finished before this process (saved results): progress, not rate.
    public func skip(_ n: Int, label: String) {
        let n = min(n, total - done)
        done += n
        skipped += n
        show(label)
    }

    /// Redraws with `label` without advancing.
    public func show(_ label: String) {
        let elapsed = MonotonicClock.millisecondsSince(start) / 1000
        let fraction = Double(done) / Double(total)
        let eta = eta(after: done, skipped: skipped, elapsedSeconds: elapsed)
        if isTerminal {
            let width = 24, filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            write("\r\u{1B}[2K\(bar) \(done)/\(total) \(String(format: "%3.0f%%", fraction * 100)) ETA \(eta)  \(label)")
            lineOpen = true
        } else {
            write("[\(done)/\(total)] \(String(format: "%.0f%%", fraction * 100)), ETA \(eta): \(label)\n")
        }
    }

    /// Prints a line above the bar (a finished cell).
    public func log(_ line: String) {
        if lineOpen { write("\r\u{1B}[2K") }
        lineOpen = false
        write(line + "\n")
    }

    public func finish() {
        if lineOpen { write("\n") }
        lineOpen = false
    }
}
