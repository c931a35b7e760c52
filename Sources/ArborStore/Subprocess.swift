import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few ways the store runs other programs (pip, unzip): to completion with the output kept for
/// error messages, or streaming stdout into a consumer.
enum Subprocess {
    /// The executable `command` names: itself if it contains a `/`, else the first match on `PATH`.
    static func findExecutable(_ command: String, environment: [String: String]) -> String? {
        if command.contains("/") {
            return FileManager.default.isExecutableFile(atPath: command) ? command : nil
        }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = "\(dir)/\(command)"
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
        }
        return nil
    }

    /// Runs to completion with stdout and stderr going to a scratch file (never a pipe, so a chatty
    /// child cannot block on a full pipe); returns the exit status and the output.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]
    ) throws(ModelStoreError) -> (status: Int32, output: String) {
        let log = try ScratchFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log.handle
        process.standardError = log.handle
        do {
            try process.run()
        } catch {
            throw .io(path: executable, operation: "run", reason: "\(error)")
        }
        process.waitUntilExit()
        return (exitStatus(process), log.contents())
    }

    /// Runs with stdout piped into `consume`, chunk by chunk, and stderr kept for error messages.
    /// If `consume` throws, the child is terminated and the error rethrown.
    static func stream(
        _ executable: String, _ arguments: [String], environment: [String: String],
        buffer: UnsafeMutableRawBufferPointer,
        consume: (UnsafeRawBufferPointer) throws(ModelStoreError) -> Void
    ) throws(ModelStoreError) -> (status: Int32, errorOutput: String) {
        let log = try ScratchFile()
        let pipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = log.handle
        do {
            try process.run()
        } catch {
            throw .io(path: executable, operation: "run", reason: "\(error)")
        }
        // Our copy of the write end must go, or the read below never sees end of file.
        try? pipe.fileHandleForWriting.close()
        let fd = pipe.fileHandleForReading.fileDescriptor
        #if os(Linux)
        // A bigger pipe (F_SETPIPE_SZ) means fewer, larger reads; the default is 64 KiB.
        _ = fcntl(fd, 1031, Int32(1 << 20))
        #endif
        do throws(ModelStoreError) {
            while true {
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n == 0 { break }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .io(path: executable, operation: "read from pipe", reason: lastError())
                }
                try consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
        } catch {
            process.terminate()
            process.waitUntilExit()
            try? pipe.fileHandleForReading.close()
            throw error
        }
        process.waitUntilExit()
        try? pipe.fileHandleForReading.close()
        return (exitStatus(process), log.contents())
    }

    /// The exit code, or 128 + signal number for a child killed by a signal (as shells report it).
    private static func exitStatus(_ process: Process) -> Int32 {
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }
}

/// An unlinked-on-deinit temporary file that collects a child's output.
private final class ScratchFile {
    let url: URL
    let handle: FileHandle

    init() throws(ModelStoreError) {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("arbor-\(getpid())-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: url.path)
        else {
            throw .io(path: url.path, operation: "create", reason: "cannot create a scratch file")
        }
        self.handle = handle
    }

    /// Everything written so far (the last 64 KiB at most: enough for an error message).
    func contents() -> String {
        guard let data = FileManager.default.contents(atPath: url.path) else { return "" }
        return String(decoding: data.suffix(64 << 10), as: UTF8.self)
    }

    deinit {
        try? handle.close()
        try? FileManager.default.removeItem(at: url)
    }
}
