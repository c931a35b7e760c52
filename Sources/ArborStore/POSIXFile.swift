#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file descriptor with throwing, EINTR-safe reads and writes. Closed on `close()` or deinit.
/// Used instead of `FileHandle` on the copy paths so one buffer is reused for a whole model.
final class POSIXFile {
    let path: String
    private(set) var fd: Int32

    init(path: String, flags: Int32, mode: mode_t = 0o644) throws(ModelStoreError) {
        self.path = path
        fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(path: path, operation: "open", reason: lastError()) }
    }

    static func reading(_ path: String) throws(ModelStoreError) -> POSIXFile {
        try POSIXFile(path: path, flags: O_RDONLY)
    }

    /// Creates or truncates `path` for writing.
    static func creating(_ path: String) throws(ModelStoreError) -> POSIXFile {
        try POSIXFile(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
    }

    deinit { if fd >= 0 { _ = sysClose(fd) } }

    func close() throws(ModelStoreError) {
        guard fd >= 0 else { return }
        let result = sysClose(fd)
        fd = -1
        guard result == 0 else { throw .io(path: path, operation: "close", reason: lastError()) }
    }

    var size: Int64 {
        get throws(ModelStoreError) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .io(path: path, operation: "stat", reason: lastError()) }
            return Int64(st.st_size)
        }
    }

    /// Reads up to `buffer.count` bytes at the current position; 0 means end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ModelStoreError) -> Int {
        while true {
            let n = sysRead(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw .io(path: path, operation: "read", reason: lastError())
        }
    }

    /// Reads exactly `count` bytes at `offset` (without moving the position).
    func read(at offset: Int64, count: Int) throws(ModelStoreError) -> [UInt8] {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 8)
        defer { raw.deallocate() }
        var done = 0
        while done < count {
            let n = pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n == 0 {
                throw .io(path: path, operation: "read", reason: "unexpected end of file at byte \(offset + Int64(done))")
            } else if errno != EINTR {
                throw .io(path: path, operation: "read", reason: lastError())
            }
        }
        return Array(UnsafeRawBufferPointer(rebasing: raw[0..<count]))
    }

    func seek(to offset: Int64) throws(ModelStoreError) {
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
            throw .io(path: path, operation: "seek", reason: lastError())
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws(ModelStoreError) {
        var done = 0
        while done < buffer.count {
            let n = sysWrite(fd, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 {
                done += n
            } else if n < 0, errno != EINTR {
                throw .io(path: path, operation: "write", reason: lastError())
            }
        }
    }

    func sync() throws(ModelStoreError) {
        guard fsync(fd) == 0 else { throw .io(path: path, operation: "fsync", reason: lastError()) }
    }
}

func lastError() -> String { String(cString: strerror(errno)) }

// The class's own `read`/`write`/`close` methods shadow the C functions inside it.
@inline(__always) private func sysClose(_ fd: Int32) -> Int32 { close(fd) }
@inline(__always) private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, buf, n) }
@inline(__always) private func sysWrite(_ fd: Int32, _ buf: UnsafeRawPointer?, _ n: Int) -> Int { write(fd, buf, n) }
