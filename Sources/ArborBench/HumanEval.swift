import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// HumanEval functional correctness: the problems, the program that checks a completion, a
// sandbox that runs it, and pass@1 with its confidence interval.

/// What can go wrong loading problems or setting up the sandbox, with the path, line or
/// command to act on. A completion that fails its tests is not an error: it is an outcome.
public enum HumanEvalError: Error, CustomStringConvertible, Equatable, Sendable {
    case unreadable(path: String, reason: String)
    /// `line` is 1-based.
    case malformedLine(path: String, line: Int, reason: String)
    case pythonNotFound(command: String)
    /// The interpreter was found but does not start (or does not say where it lives).
    case pythonUnusable(command: String, output: String)
    /// A trivial program did not pass in the sandbox: its limits or tools do not work here.
    case sandboxUnusable(reason: String)
    case io(path: String, operation: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            "\(path): cannot read HumanEval problems: \(reason)"
        case let .malformedLine(path, line, reason):
            "\(path):\(line): not a HumanEval problem: \(reason)"
        case let .pythonNotFound(command):
            "cannot find '\(command)' to run HumanEval checks; install Python 3 or pass the interpreter's path"
        case let .pythonUnusable(command, output):
            "'\(command)' does not run: \(output.isEmpty ? "no output" : output)"
        case let .sandboxUnusable(reason):
            "the HumanEval sandbox does not work on this machine: \(reason)"
        case let .io(path, operation, reason):
            "\(path): \(operation) failed: \(reason)"
        }
    }
}

// MARK: - Problems

/// One HumanEval problem: a function signature with its docstring, the reference body, and a
/// `check(candidate)` function that asserts on the candidate.
public struct HumanEvalProblem: Codable, Sendable, Equatable {
    /// `HumanEval/0` … `HumanEval/163`.
    public var taskID: String
    /// Imports, helpers and the function's `def` line with its docstring; ends in a newline.
    public var prompt: String
    /// The name of the function under test (the argument to `check`).
    public var entryPoint: String
    /// The reference body, indented to follow `prompt`.
    public var canonicalSolution: String
    /// Python that defines `check(candidate)` (and sometimes `METADATA`).
    public var test: String

    enum CodingKeys: String, CodingKey {
        case taskID = "task_id", prompt, entryPoint = "entry_point", canonicalSolution = "canonical_solution", test
    }

    public init(taskID: String, prompt: String, entryPoint: String, canonicalSolution: String, test: String) {
        self.taskID = taskID
        self.prompt = prompt
        self.entryPoint = entryPoint
        self.canonicalSolution = canonicalSolution
        self.test = test
    }

    /// The problems of a JSON-lines file (one object per line, blank lines skipped), in file
    /// order, the first `limit` of them if given.
    public static func load(path: String, limit: Int? = nil) throws(HumanEvalError) -> [HumanEvalProblem] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        let wanted = limit.map { max(0, $0) } ?? Int.max
        var problems: [HumanEvalProblem] = []
        let decoder = JSONDecoder()
        // Split on the byte 0x0A rather than on Characters: "\r\n" is one Character in Swift, and
        // JSON strings may legally hold raw U+2028, which `isNewline` would split on.
        for (index, rawLine) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            guard problems.count < wanted else { break }
            let line = rawLine.last == 0x0D ? rawLine.dropLast() : rawLine
            guard line.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { continue }
            do {
                problems.append(try decoder.decode(HumanEvalProblem.self, from: Data(line)))
            } catch let error as DecodingError {
                throw .malformedLine(path: path, line: index + 1, reason: Self.reason(error))
            } catch {
                throw .malformedLine(path: path, line: index + 1, reason: "\(error)")
            }
        }
        return problems
    }

    /// A one-line reason for a decoding failure (the default description is a paragraph).
    private static func reason(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, _):
            "missing key '\(key.stringValue)'"
        case let .typeMismatch(_, context), let .valueNotFound(_, context):
            "'\(context.codingPath.map(\.stringValue).joined(separator: "."))' is not a string"
        case .dataCorrupted:
            "not a valid JSON object"
        @unknown default:
            "\(error)"
        }
    }
}

// MARK: - Programs

/// Turns a chat completion into the Python program that checks it.
public enum HumanEvalProgram {
    /// The code of the first ```` ```python ````, ```` ```py ```` or bare ```` ``` ```` block
    /// (fenced blocks in other languages are skipped), up to its closing fence or the end of the
    /// text — a generation cut at the token limit leaves the fence open. Without such a block, the
    /// whole text. Blank lines around the code are dropped; indentation is kept, since a body
    /// without its `def` line must stay indented.
    public static func extractCode(from completion: String) -> String {
        let lines = completion.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        var index = 0
        while index < lines.count {
            guard let info = fenceInfo(lines[index]) else {
                index += 1
                continue
            }
            var end = index + 1
            while end < lines.count, fenceInfo(lines[end]) == nil { end += 1 }
            let language = info.split(separator: " ").first.map { $0.lowercased() } ?? ""
            if ["python", "python3", "py", ""].contains(language) {
                return trimmingBlankLines(lines[(index + 1)..<end])
            }
            index = end + 1  // past the other language's closing fence
        }
        return trimmingBlankLines(lines[...])
    }

    /// Printed after the tests: with exit status 0, the program passed.
    public static let passMarker = "ARBOR-HUMANEVAL-PASSED"

    /// The program that runs `problem`'s tests on `completion`: exit status 0 with the pass
    /// marker on stdout means it passed.
    ///
    /// When the code defines the entry point, it follows the whole prompt: the prompt's own
    /// function, whose body is only its docstring, is valid Python and the later definition
    /// replaces it, while the prompt's imports and helpers stay available to code that left them
    /// out. Otherwise the model wrote only the body, which continues the prompt directly.
    public static func build(problem: HumanEvalProblem, completion: String) -> String {
        let code = extractCode(from: completion)
        // The marker proves the tests ran to the end: a completion that calls `exit(0)` early
        // (or is killed) exits without it and fails.
        let tests = "\n\n" + problem.test + "\n\ncheck(\(problem.entryPoint))\nprint(\"\(passMarker)\")\n"
        if defines(function: problem.entryPoint, in: code) {
            return problem.prompt + "\n" + code + tests
        }
        return problem.prompt + code + tests
    }

    /// Whether some line of `code` is `def name(` (any indentation, spaces before the parenthesis).
    static func defines(function name: String, in code: String) -> Bool {
        code.split(omittingEmptySubsequences: true) { $0 == "\n" || $0 == "\r\n" }.contains { line in
            var rest = line.drop(while: \.isWhitespace)
            guard rest.hasPrefix("def ") else { return false }
            rest = rest.dropFirst(4).drop(while: \.isWhitespace)
            guard rest.hasPrefix(name) else { return false }
            return rest.dropFirst(name.count).drop(while: \.isWhitespace).hasPrefix("(")
        }
    }

    /// For a line opening or closing a fenced block (```` ``` ```` after optional indentation),
    /// the info string after the backticks, trimmed; nil for any other line.
    private static func fenceInfo(_ line: Substring) -> String? {
        let text = line.drop(while: \.isWhitespace)
        guard text.hasPrefix("```") else { return nil }
        return text.drop(while: { $0 == "`" }).trimmingCharacters(in: .whitespaces)
    }

    private static func trimmingBlankLines(_ lines: ArraySlice<Substring>) -> String {
        let isBlank: (Substring) -> Bool = { $0.allSatisfy(\.isWhitespace) }
        guard let first = lines.firstIndex(where: { !isBlank($0) }),
              let last = lines.lastIndex(where: { !isBlank($0) }) else { return "" }
        return lines[first...last].joined(separator: "\n")
    }
}

// MARK: - Sandbox

/// How a checked program ended.
public enum HumanEvalOutcome: Codable, Sendable, Equatable {
    case passed
    /// The last lines of the program's stderr (its traceback), or of stdout if stderr is empty,
    /// or how it ended if it printed nothing.
    case failed(String)
    /// Over the CPU-time or wall-clock limit.
    case timedOut

    public var isPassed: Bool { self == .passed }
}

/// Runs untrusted Python programs, each in a fresh scratch directory and with limits; calls may
/// run concurrently.
///
/// The child's command line:
///
///     unshare -rn /bin/sh -c 'ulimit -c 0 && ulimit -v KIB && ulimit -t T+1 && ulimit -S -t T
///         && ulimit -f 2048 && exec "$@"' arbor-sandbox PYTHON -I -B program.py
///
/// `unshare -rn` puts it in new user and network namespaces (only a down loopback: no network);
/// where that is not possible it runs without (`isolatedNetwork` is false). The shell sets the
/// limits and then `exec`s, so the sandboxed process is Python itself: address space
/// (`memoryBytes`), CPU time (SIGXCPU at `timeoutSeconds`, SIGKILL a second later), no core
/// files, files of at most 1 MiB (which also caps the captured output). Python runs in isolated
/// mode (`-I`: no `PYTHON*` variables, no user site, not the script's directory on `sys.path`)
/// without writing bytecode, with stdin `/dev/null`, a minimal environment (`PATH`, `HOME` = the
/// scratch directory, `LANG=C.UTF-8`), and is killed with its process group at
/// `timeoutSeconds + 1` seconds of wall-clock time (a sleeping program uses no CPU).
///
/// Not a security boundary: the filesystem is not isolated (the program runs as this user, root
/// inside the namespace) and the number of processes is not limited (`RLIMIT_NPROC` counts per
/// user, so it would count this user's other processes too).
public struct HumanEvalSandbox: Sendable {
    /// CPU seconds before SIGXCPU; the wall-clock limit is one second more.
    public var timeoutSeconds: Int
    /// The limit on the program's address space (`RLIMIT_AS`).
    public var memoryBytes: Int
    /// The interpreter as the caller named it.
    public let python: String
    /// The interpreter the sandbox runs: `python` found on `PATH` and resolved to Python's own
    /// `sys.executable`, so that no launcher (a pyenv shim, say) has to work inside the sandbox.
    public let interpreter: String
    /// `unshare`, if it can make user and network namespaces here; nil runs without (tests
    /// clear it to try that path).
    var unshare: String?

    /// Whether programs run without network access (in a network namespace of their own).
    public var isolatedNetwork: Bool { unshare != nil }

    /// Size limit for every file the program writes, in the 512-byte blocks of POSIX `ulimit -f`.
    static let fileSizeBlocks = 2048
    /// How much of the end of the program's output a failure keeps.
    static let failureTailBytes = 4096
    static let failureTailLines = 20

    /// Finds the interpreter, checks once per process whether network namespaces work, then runs
    /// a trivial program to check that the sandbox as a whole works with these limits.
    public init(timeoutSeconds: Int = 10, memoryBytes: Int = 1 << 30, python: String = "python3") throws(HumanEvalError) {
        precondition(timeoutSeconds >= 1, "timeoutSeconds must be at least 1")
        precondition(memoryBytes >= 1 << 20, "memoryBytes must be at least 1 MiB")
        self.timeoutSeconds = timeoutSeconds
        self.memoryBytes = memoryBytes
        self.python = python
        interpreter = try Self.resolveInterpreter(python)
        unshare = Self.workingUnshare
        switch try run(program: "import sys\n") {
        case .passed: break
        case let .failed(output): throw .sandboxUnusable(reason: "a trivial program fails: \(output)")
        case .timedOut: throw .sandboxUnusable(reason: "a trivial program times out")
        }
    }

    /// Checks `completion` against `problem`'s tests.
    public func check(problem: HumanEvalProblem, completion: String) throws(HumanEvalError) -> HumanEvalOutcome {
        try run(program: HumanEvalProgram.build(problem: problem, completion: completion), marker: HumanEvalProgram.passMarker)
    }

    /// Runs `program` as `program.py` in a fresh scratch directory, removed afterwards. Throws only
    /// when the sandbox itself fails (no scratch directory, the child does not start): a program
    /// that fails in any way is a `.failed` outcome.
    /// With `marker`, a program passes only if its stdout also holds that line.
    public func run(program: String, marker: String? = nil) throws(HumanEvalError) -> HumanEvalOutcome {
        let scratch = try SandboxScratch()
        defer { scratch.remove() }
        let source = scratch.url.appendingPathComponent("program.py")
        do {
            // Ignored and blocked signals are inherited: a parent that blocks SIGTERM or SIGXCPU
            // (a thread of a Swift process may) would pass that on, and a program killed by one
            // would run on and "pass". One line, so tracebacks stay one line off at most.
            let preamble = "import signal as _s; _n = [getattr(_s, n) for n in ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGXCPU') if hasattr(_s, n)]; "
                + "[_s.signal(n, _s.SIG_DFL) for n in _n]; _s.pthread_sigmask(_s.SIG_UNBLOCK, _n); del _s, _n\n"
            try Data((preamble + program).utf8).write(to: source)
        } catch {
            throw .io(path: source.path, operation: "write", reason: (error as NSError).localizedDescription)
        }
        let stdout = scratch.url.appendingPathComponent("stdout.log")
        let stderr = scratch.url.appendingPathComponent("stderr.log")
        let command = commandLine()
        let end = try SandboxChild.run(
            command[0], Array(command.dropFirst()),
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch.url.path, "LANG": "C.UTF-8"],
            directory: scratch.url, stdout: stdout, stderr: stderr,
            deadline: Double(timeoutSeconds) + 1
        )
        switch end {
        case .killedAtDeadline:
            return .timedOut
        case .signaled(SIGXCPU):
            return .timedOut
        case .exited(0):
            if let marker {
                let out = (try? String(contentsOf: stdout, encoding: .utf8)) ?? ""
                guard out.split(separator: "\n").contains(Substring(marker)) else {
                    return .failed("exited before the tests finished (no pass marker)")
                }
            }
            return .passed
        case let .exited(status):
            return .failed(Self.failureMessage(stderr: stderr, stdout: stdout, otherwise: "exit status \(status)"))
        case let .signaled(signal):
            return .failed(Self.failureMessage(stderr: stderr, stdout: stdout, otherwise: "killed by signal \(signal)"))
        }
    }

    /// The child's executable and arguments (see the type's documentation).
    func commandLine() -> [String] {
        let limits = [
            "ulimit -c 0",
            "ulimit -v \(max(1, memoryBytes / 1024))",
            // Hard limit first: it also lowers the soft limit, which `-S` then sets a second
            // below it, so that Python gets SIGXCPU (distinguishable) before SIGKILL.
            "ulimit -t \(timeoutSeconds + 1)",
            "ulimit -S -t \(timeoutSeconds)",
            "ulimit -f \(Self.fileSizeBlocks)",
        ]
        let script = (limits + ["exec \"$@\""]).joined(separator: " && ")
        let shell = ["/bin/sh", "-c", script, "arbor-sandbox", interpreter, "-I", "-B", "program.py"]
        guard let unshare else { return shell }
        return [unshare, "-rn"] + shell
    }

    private static func failureMessage(stderr: URL, stdout: URL, otherwise: String) -> String {
        for url in [stderr, stdout] {
            let text = tail(of: url)
            if !text.isEmpty { return text }
        }
        return otherwise
    }

    /// The last lines of a file, read from its last few KB only.
    static func tail(of url: URL) -> String {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return "" }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd() else { return "" }
        let start = size > UInt64(failureTailBytes) ? size - UInt64(failureTailBytes) : 0
        guard (try? handle.seek(toOffset: start)) != nil,
              let data = try? handle.readToEnd() else { return "" }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut mid-line
        while let last = lines.last, last.allSatisfy(\.isWhitespace) { lines.removeLast() }
        return lines.suffix(failureTailLines).joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `command` resolved to the interpreter's `sys.executable`, run with this process's
    /// environment (a launcher may need it).
    static func resolveInterpreter(_ command: String) throws(HumanEvalError) -> String {
        let environment = ProcessInfo.processInfo.environment
        guard let found = findExecutable(command, path: environment["PATH"]) else { throw .pythonNotFound(command: command) }
        let scratch = try SandboxScratch()
        defer { scratch.remove() }
        let output = scratch.url.appendingPathComponent("stdout.log")
        let end = try SandboxChild.run(
            found, ["-I", "-c", "import sys; sys.stdout.write(sys.executable or '')"],
            environment: environment, directory: scratch.url, stdout: output, stderr: output, deadline: 30
        )
        let text = tail(of: output)
        guard end == .exited(0) else { throw .pythonUnusable(command: found, output: text) }
        // An embedded or unusual Python may not know its executable: then run what was found.
        return FileManager.default.isExecutableFile(atPath: text) ? text : found
    }

    /// `unshare` if `unshare -rn true` works, found once per process.
    static let workingUnshare: String? = {
        guard let unshare = HumanEvalSandbox.findExecutable("unshare", path: ProcessInfo.processInfo.environment["PATH"]) else { return nil }
        let end = try? SandboxChild.run(
            unshare, ["-rn", "true"], environment: ["PATH": "/usr/local/bin:/usr/bin:/bin"],
            directory: FileManager.default.temporaryDirectory, stdout: nil, stderr: nil, deadline: 10
        )
        return end == .exited(0) ? unshare : nil
    }()

    /// The executable `command` names: itself if it contains a `/`, else the first match on `path`.
    static func findExecutable(_ command: String, path: String?) -> String? {
        if command.contains("/") {
            return FileManager.default.isExecutableFile(atPath: command) ? command : nil
        }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(command)"
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
        }
        return nil
    }
}

/// A private directory under the system temporary directory.
private struct SandboxScratch {
    let url: URL

    init() throws(HumanEvalError) {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("arbor-humaneval-\(getpid())-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(
                at: url, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw .io(path: url.path, operation: "create directory", reason: (error as NSError).localizedDescription)
        }
    }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// One child process with a wall-clock deadline, its output in files: never a pipe, which a
/// chatty child could fill and block on, or a stray grandchild could hold open.
private enum SandboxChild {
    enum End: Equatable {
        case exited(Int32)
        case signaled(Int32)
        /// Still running at the deadline, so killed.
        case killedAtDeadline
    }

    /// Runs to completion or to `deadline` seconds. stdout and stderr go to the given files
    /// (created or truncated; the same URL for both shares one file), or to `/dev/null` if nil.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String], directory: URL,
        stdout: URL?, stderr: URL?, deadline: Double
    ) throws(HumanEvalError) -> End {
        // Only the handles opened here are closed: the shared null device stays open.
        let out = try handle(stdout)
        let err = try stderr == stdout ? out : handle(stderr)
        defer {
            try? out?.close()
            if stderr != stdout { try? err?.close() }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out ?? FileHandle.nullDevice
        process.standardError = err ?? FileHandle.nullDevice
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            throw .io(path: executable, operation: "run", reason: (error as NSError).localizedDescription)
        }
        // Foundation starts the child as the leader of its own process group (POSIX_SPAWN_SETPGROUP),
        // and the shell and unshare `exec`, so the group is the program and whatever it started.
        let pid = process.processIdentifier
        var killed = false
        let timedOut = done.wait(timeout: .now() + deadline) == .timedOut
        if timedOut {
            killed = true
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)  // in case it is not a group leader after all
            // SIGKILL cannot be caught or ignored; the bound only keeps a stuck kernel from
            // hanging the caller.
            if done.wait(timeout: .now() + 5) == .timedOut { return .killedAtDeadline }
        }
        // Whatever the program left running in its group (a background child) goes too. The
        // group id cannot have been reused while such a member is alive.
        kill(-pid, SIGKILL)
        if killed { return .killedAtDeadline }
        // The termination handler can run before the status is recorded; waiting makes it final.
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal
            ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
    }

    /// A new, empty file at `url` open for writing; nil for no URL.
    private static func handle(_ url: URL?) throws(HumanEvalError) -> FileHandle? {
        guard let url else { return nil }
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: url.path)
        else {
            throw .io(path: url.path, operation: "create", reason: "cannot create an output file")
        }
        return handle
    }
}

// MARK: - pass@1

/// The share of problems passed, with its 95% Wilson score interval: unlike the normal
/// approximation it stays within [0, 1] and is not empty at 0 or n passes.
public struct PassAtOne: Codable, Sendable, Equatable {
    public var passed: Int
    public var total: Int
    /// `passed / total`; 0 when there are no problems.
    public var rate: Double
    /// The 95% interval; [0, 1] when there are no problems.
    public var lower: Double
    public var upper: Double

    /// The normal quantile for a two-sided 95% interval.
    static let z = 1.959963984540054

    public init(passed: Int, total: Int) {
        precondition(total >= 0 && passed >= 0 && passed <= total, "need 0 ≤ passed ≤ total, got \(passed)/\(total)")
        self.passed = passed
        self.total = total
        guard total > 0 else {
            rate = 0; lower = 0; upper = 1
            return
        }
        let n = Double(total)
        let p = Double(passed) / n
        let z2 = Self.z * Self.z
        let denominator = 1 + z2 / n
        let center = (p + z2 / (2 * n)) / denominator
        let half = Self.z / denominator * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
        rate = p
        // Exact at the ends: rounding would otherwise leave e.g. 1e-17 above 0 for 0 passes.
        lower = passed == 0 ? 0 : max(0, center - half)
        upper = passed == total ? 1 : min(1, center + half)
    }

    /// Whether the two intervals overlap: the two rates are not told apart at this confidence
    /// (a conservative test; use it to check that a faster configuration keeps quality).
    public func agrees(with other: PassAtOne) -> Bool {
        lower <= other.upper && other.lower <= upper
    }
}
