#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock (`flock`) on a lock file, held until `unlock()` or deinit. Keeps two
/// processes (or two stores in one process) from assembling the same model at once. The lock file
/// itself is left in place: deleting it would race with a process about to lock it.
final class FileLock {
    private var fd: Int32

    /// Takes the lock, calling `onWait` once first if another holder makes us block.
    init(path: String, onWait: () -> Void) throws(ModelStoreError) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open lock file", reason: lastError()) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return }
        guard errno == EWOULDBLOCK else {
            let reason = lastError()
            close(fd)
            throw .io(path: path, operation: "lock", reason: reason)
        }
        onWait()
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let reason = lastError()
                close(fd)
                throw .io(path: path, operation: "lock", reason: reason)
            }
        }
    }

    func unlock() {
        guard fd >= 0 else { return }
        close(fd)  // releases the flock
        fd = -1
    }

    deinit { unlock() }
}
