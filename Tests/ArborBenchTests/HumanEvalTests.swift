import ArborTestSupport
import Foundation
import Testing
@testable import ArborBench

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A problem in HumanEval's shape: imports, a docstring-only function, a `check` with asserts.
private let addProblem = HumanEvalProblem(
    taskID: "Test/0",
    prompt: "from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    \"\"\" Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    \"\"\"\n",
    entryPoint: "add",
    canonicalSolution: "    return a + b\n",
    test: "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
)

private let hasPython = HumanEvalSandbox.findExecutable("python3", path: ProcessInfo.processInfo.environment["PATH"]) != nil

/// One sandbox for all tests (finding Python and the self-check run once): 1 s, 256 MiB.
private let sharedSandbox: Result<HumanEvalSandbox, any Error> = Result {
    try HumanEvalSandbox(timeoutSeconds: 1, memoryBytes: 256 << 20)
}

@Suite("HumanEval programs, problems and pass@1")
struct HumanEvalProgramTests {
    @Test("the first Python block is the code, closed or cut off; without a fence, the whole text")
    func extraction() {
        #expect(HumanEvalProgram.extractCode(
            from: "Here is the function:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nIt adds."
        ) == "def add(a, b):\n    return a + b")
        // Cut at the token limit: no closing fence.
        #expect(HumanEvalProgram.extractCode(
            from: "```python\nfrom math import fsum\n\ndef add(a, b):\n    return a + b\n"
        ) == "from math import fsum\n\ndef add(a, b):\n    return a + b")
        #expect(HumanEvalProgram.extractCode(from: "  \ndef add(a, b):\n    return a + b\n\n") == "def add(a, b):\n    return a + b")
        #expect(HumanEvalProgram.extractCode(from: "```bash\npip install x\n```\n```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1")
        #expect(HumanEvalProgram.extractCode(from: "Code:\n```\nx = 2\n```") == "x = 2")
        #expect(HumanEvalProgram.extractCode(from: "```python\r\ndef f():\r\n    pass\r\n```\r\n") == "def f():\n    pass")
        // A body keeps its indentation.
        #expect(HumanEvalProgram.extractCode(from: "```python\n    return a + b\n```") == "    return a + b")
    }

    @Test("a whole function follows the prompt; a body continues it")
    func programs() {
        let tail = "\n\n" + addProblem.test + "\n\ncheck(add)\nprint(\"\(HumanEvalProgram.passMarker)\")\n"
        let whole = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"
        #expect(HumanEvalProgram.build(problem: addProblem, completion: whole)
            == addProblem.prompt + "\n" + "def add(a: int, b: int) -> int:\n    return a + b" + tail)
        #expect(HumanEvalProgram.build(problem: addProblem, completion: addProblem.canonicalSolution)
            == addProblem.prompt + "    return a + b" + tail)
        #expect(HumanEvalProgram.defines(function: "add", in: "import math\n\n    def add (x):\n        pass"))
        #expect(!HumanEvalProgram.defines(function: "add", in: "def adder(x):\n    return add(x)"))
        #expect(!HumanEvalProgram.defines(function: "add", in: "    return a + b"))
    }

    @Test("problems load from JSON lines, blank lines skipped, the first `limit` if given")
    func loading() throws {
        try TemporaryDirectory.with { dir in
            let encoder = JSONEncoder()
            let lines = try (0..<3).map { i in
                var p = addProblem
                p.taskID = "Test/\(i)"
                return String(decoding: try encoder.encode(p), as: UTF8.self)
            }
            let url = dir.file("problems.jsonl")
            try Data((lines[0] + "\n\n" + lines[1] + "\r\n" + lines[2] + "\n").utf8).write(to: url)
            let all = try HumanEvalProblem.load(path: url.path)
            #expect(all.map(\.taskID) == ["Test/0", "Test/1", "Test/2"])
            #expect(all[0] == addProblem)
            #expect(try HumanEvalProblem.load(path: url.path, limit: 2).map(\.taskID) == ["Test/0", "Test/1"])
            #expect(try HumanEvalProblem.load(path: url.path, limit: 0).isEmpty)
        }
    }

    @Test("a malformed line is reported with the file and its 1-based line number")
    func malformed() throws {
        try TemporaryDirectory.with { dir in
            let good = String(decoding: try JSONEncoder().encode(addProblem), as: UTF8.self)
            let url = dir.file("bad.jsonl")
            try Data((good + "\n{not json\n").utf8).write(to: url)
            let error = #expect(throws: HumanEvalError.self) { try HumanEvalProblem.load(path: url.path) }
            guard case let .malformedLine(path, line, _) = error else {
                Issue.record("expected malformedLine, got \(String(describing: error))")
                return
            }
            #expect(path == url.path && line == 2)
            #expect(error?.description.hasPrefix("\(url.path):2: ") == true)

            try Data((good + "\n" + #"{"task_id": "X", "prompt": "p"}"# + "\n").utf8).write(to: url)
            let missing = #expect(throws: HumanEvalError.self) { try HumanEvalProblem.load(path: url.path) }
            #expect(missing?.description.contains("missing key") == true)

            let absent = dir.file("absent.jsonl").path
            let unreadable = #expect(throws: HumanEvalError.self) { try HumanEvalProblem.load(path: absent) }
            guard case .unreadable(absent, _) = unreadable else {
                Issue.record("expected unreadable, got \(String(describing: unreadable))")
                return
            }
        }
    }

    @Test("a missing interpreter is a typed error")
    func missingPython() {
        #expect(throws: HumanEvalError.pythonNotFound(command: "/nonexistent/python3")) {
            try HumanEvalSandbox(python: "/nonexistent/python3")
        }
    }

    @Test("Wilson intervals stay in [0, 1], are exact at the ends and symmetric at one half")
    func wilson() {
        let none = PassAtOne(passed: 0, total: 0)
        #expect(none.rate == 0 && none.lower == 0 && none.upper == 1)

        let zero = PassAtOne(passed: 0, total: 10)
        #expect(zero.rate == 0 && zero.lower == 0)
        #expect(abs(zero.upper - 0.27753) < 1e-4)

        let all = PassAtOne(passed: 10, total: 10)
        #expect(all.rate == 1 && all.upper == 1)
        #expect(abs(all.lower - 0.72247) < 1e-4)

        let half = PassAtOne(passed: 82, total: 164)
        #expect(half.rate == 0.5)
        #expect(abs(half.lower - 0.42436) < 1e-4 && abs(half.upper - 0.57564) < 1e-4)
        #expect(abs(half.lower + half.upper - 1) < 1e-12)

        #expect(half.agrees(with: PassAtOne(passed: 90, total: 164)))
        #expect(PassAtOne(passed: 90, total: 164).agrees(with: half))
        #expect(!half.agrees(with: PassAtOne(passed: 120, total: 164)))
        #expect(none.agrees(with: half) && none.agrees(with: all))
        #expect(!zero.agrees(with: all))
    }
}

@Suite("HumanEval sandbox", .enabled(if: hasPython, "python3 is not on PATH"))
struct HumanEvalSandboxTests {
    func sandbox() throws -> HumanEvalSandbox { try sharedSandbox.get() }

    @Test("the canonical solution passes, as a body and as a whole function; a wrong one fails")
    func passAndFail() throws {
        let s = try sandbox()
        #expect(try s.check(problem: addProblem, completion: addProblem.canonicalSolution) == .passed)
        let whole = "Sure:\n```python\ndef add(a: int, b: int) -> int:\n    return b + a\n```"
        #expect(try s.check(problem: addProblem, completion: whole) == .passed)

        let wrong = "```python\ndef add(a: int, b: int) -> int:\n    return a - b\n```"
        guard case let .failed(message) = try s.check(problem: addProblem, completion: wrong) else {
            Issue.record("a wrong solution did not fail")
            return
        }
        #expect(message.contains("AssertionError"))
        // Prose with no code is a syntax error, not a pass.
        #expect(try s.check(problem: addProblem, completion: "I cannot help with that.") != .passed)
    }

    @Test("the sandbox command line: namespaces, limits, isolated Python")
    func commandLine() throws {
        let s = try sandbox()
        let command = s.commandLine()
        #expect(Array(command.suffix(4)) == [s.interpreter, "-I", "-B", "program.py"])
        let script = try #require(command.firstIndex(of: "-c").map { command[$0 + 1] })
        #expect(script.contains("ulimit -v 262144") && script.contains("ulimit -S -t 1") && script.contains("ulimit -t 2"))
        if s.isolatedNetwork { #expect(command[1] == "-rn") } else { #expect(command[0] == "/bin/sh") }
    }

    @Test("an endless loop times out by its CPU limit, a sleeping program by the wall clock")
    func timeouts() throws {
        let s = try sandbox()
        let clock = ContinuousClock()
        var start = clock.now
        #expect(try s.run(program: "while True:\n    pass\n") == .timedOut)
        #expect(clock.now - start < .seconds(5))

        start = clock.now
        #expect(try s.run(program: "import time\ntime.sleep(30)\n") == .timedOut)
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(1900) && elapsed < .seconds(5))
    }

    @Test("with a network namespace a program cannot connect out",
          .enabled(if: (try? sharedSandbox.get())?.isolatedNetwork == true, "no user and network namespaces here"))
    func noNetwork() throws {
        let program = "import socket\nsocket.create_connection((\"1.1.1.1\", 53), timeout=2)\nprint(\"connected\")\n"
        guard case let .failed(message) = try sandbox().run(program: program) else {
            Issue.record("the program connected (or timed out instead of failing at once)")
            return
        }
        #expect(message.contains("OSError"))
    }

    @Test("allocating 4 GiB under a 256 MiB limit fails with MemoryError")
    func memoryLimit() throws {
        guard case let .failed(message) = try sandbox().run(program: "x = bytearray(4 << 30)\n") else {
            Issue.record("the allocation did not fail")
            return
        }
        #expect(message.contains("MemoryError"))
    }

    @Test("a failure keeps the last lines of stderr, or says how the program ended")
    func failureMessages() throws {
        let s = try sandbox()
        let chatty = "import sys\nfor i in range(2000):\n    print('line', i, file=sys.stderr)\nsys.exit(1)\n"
        guard case let .failed(message) = try s.run(program: chatty) else {
            Issue.record("the program did not fail")
            return
        }
        #expect(message.hasSuffix("line 1999") && message.utf8.count <= 4096)
        #expect(message.split(separator: "\n").count <= 20)
        #expect(try s.run(program: "import sys\nsys.exit(3)\n") == .failed("exit status 3"))
        let killed = try s.run(program: "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
        #expect(killed == .failed("killed by signal 15"), "\(killed)")
    }

    @Test("a background process the program started does not outlive it")
    func strayChild() throws {
        let s = try sandbox()
        try TemporaryDirectory.with { dir in
            let pidFile = dir.file("child.pid").path
            let program = """
                import subprocess, sys
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
                open("\(pidFile)", "w").write(str(child.pid))
                """
            #expect(try s.run(program: program) == .passed)
            let pid = try #require(Int32(String(decoding: try Data(contentsOf: URL(fileURLWithPath: pidFile)), as: UTF8.self)))
            var gone = false
            for _ in 0..<40 where !gone {
                gone = !Self.isAlive(pid)
                if !gone { usleep(50_000) }
            }
            #expect(gone)
            if !gone { kill(pid, SIGKILL) }
        }
    }

    @Test("without a network namespace programs still run, and the sandbox says so")
    func withoutNamespace() throws {
        var s = try sandbox()
        s.unshare = nil
        #expect(!s.isolatedNetwork)
        #expect(s.commandLine().first == "/bin/sh")
        #expect(try s.check(problem: addProblem, completion: addProblem.canonicalSolution) == .passed)
    }

    /// Running or stopped, as opposed to exited (a zombie not yet reaped by its new parent).
    private static func isAlive(_ pid: Int32) -> Bool {
        #if os(Linux)
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X"
        #else
        return kill(pid, 0) == 0
        #endif
    }
}

@Suite("HumanEval pass marker")
struct HumanEvalMarkerTests {
    @Test("a completion that exits early with status 0 fails: the tests did not run")
    func earlyExit() throws {
        guard let sandbox = try? HumanEvalSandbox(timeoutSeconds: 2, memoryBytes: 256 << 20) else { return }
        let problem = HumanEvalProblem(taskID: "t/0", prompt: "def add(a, b):\n    \"\"\"Add.\"\"\"\n", entryPoint: "add",
                                       canonicalSolution: "    return a + b\n",
                                       test: "def check(f):\n    assert f(1, 2) == 3\n")
        #expect(try sandbox.check(problem: problem, completion: "```python\ndef add(a, b):\n    return a + b\n```") == .passed)
        #expect(try sandbox.check(problem: problem, completion: "```python\nimport sys\nsys.exit(0)\n```") != .passed)
        #expect(try sandbox.check(problem: problem, completion: "```python\ndef add(a, b):\n    return a - b\n```") != .passed)
    }
}
