#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file. Tensor data is read in place from it, so a model
/// costs page cache, not heap. Unmapped when the last reference goes away.
public final class MappedFile: @unchecked Sendable {
    /// The mapped bytes; valid for the lifetime of this object. Never written.
    public let bytes: UnsafeRawBufferPointer
    public let path: String
    /// True when `bytes` is a heap copy (see `init(copying:path:)`) rather than a mapping.
    private let ownsHeapCopy: Bool

    public init(path: String) throws(GGUFError) {
        self.path = path
        self.ownsHeapCopy = false
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw .cannotOpen(path: path, reason: "mmap failed: " + String(cString: strerror(errno)))
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    /// An in-memory stand-in for a mapped file, holding a copy of `contents` (handy for tests and
    /// for parsing bytes that never touched the disk). `path` only labels error messages.
    public init(copying contents: some Collection<UInt8>, path: String) {
        self.path = path
        self.ownsHeapCopy = true
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(contents.count, 1), alignment: 64)
        let count = contents.count
        buffer.copyBytes(from: contents)
        self.bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<count])
    }

    deinit {
        if ownsHeapCopy {
            UnsafeMutableRawPointer(mutating: bytes.baseAddress!).deallocate()
        } else if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    /// Ask the kernel to read a range ahead (weights are streamed on every token).
    public func adviseWillNeed(offset: Int, count: Int) {
        guard let base = bytes.baseAddress, !ownsHeapCopy, offset >= 0, offset < bytes.count, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let end = offset + min(count, bytes.count - offset)
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_WILLNEED)
    }
}
