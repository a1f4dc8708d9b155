import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Directory operations relative to descriptors that never follow a symlink, for the cache.
enum TreeOps {
    /// A short random name part, so that threads of one process get distinct temp names too.
    static func token() -> String {
        String(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff, radix: 16)
    }

    /// Names in the directory open at `fd` (not "." or ".."), unsorted.
    static func list(_ fd: Int32) -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let dir = fdopendir(copy) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    static func list(path: String) -> [String] {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        return list(fd)
    }

    /// Removes `name` below `parentFD` and everything in it; symlinks are removed, never followed.
    @discardableResult
    static func remove(_ name: String, in parentFD: Int32) -> Bool {
        if unlinkat(parentFD, name, 0) == 0 { return true }
        guard errno == EISDIR || errno == EPERM else { return errno == ENOENT }
        let fd = openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        for child in list(fd) { remove(child, in: fd) }
        close(fd)
        return unlinkat(parentFD, name, AT_REMOVEDIR) == 0
    }

    /// Opens the directory `name` below `parentFD`, refusing a symlink.
    static func openDirectory(_ name: String, in parentFD: Int32) -> Int32 {
        openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    }

    /// Writes `bytes` to `name` below `dirFD` through a uniquely named temp file, fsynced and
    /// renamed into place, so readers never see a partial file.
    static func writeAtomically(_ bytes: [UInt8], name: String, in dirFD: Int32, mode: mode_t = 0o644) throws(Errno) {
        let temporary = ".\(name).tmp-\(getpid())-\(token())"
        let fd = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Errno.current }
        do throws(Errno) {
            try FileSystem.writeAll(bytes, to: fd)
            guard fsync(fd) == 0 else { throw Errno.current }
        } catch {
            close(fd)
            unlinkat(dirFD, temporary, 0)
            throw error
        }
        close(fd)
        guard renameat(dirFD, temporary, dirFD, name) == 0 else {
            let err = Errno.current
            unlinkat(dirFD, temporary, 0)
            throw err
        }
    }

    /// The contents of `name` below `dirFD` (not through a symlink), or nil.
    static func read(_ name: String, in dirFD: Int32, limit: Int = 64 << 20) -> [UInt8]? {
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while result.count <= limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return n == 0 ? result : nil }
            result.append(contentsOf: chunk[0..<n])
        }
        return nil
    }

    static func canonical(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// An exclusive flock on a lock file in a cache directory, held until released or deinit.
/// flock locks belong to the open file description, so threads of one process exclude each
/// other as processes do.
final class CacheLock {
    private var fd: Int32

    init(_ name: String, in dirFD: Int32, display: String, log: @Sendable (String) -> Void) throws(HeaderError) {
        fd = openat(dirFD, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw HeaderError("cannot open the cache lock \(display): \(Errno.current); remove it or set KPROBE_RUN_CACHE_DIR")
        }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return }
        log("waiting for another kprobe-run to finish with \(display)")
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let err = Errno.current
            close(fd)
            throw HeaderError("cannot lock \(display): \(err)")
        }
    }

    deinit { close(fd) }
}
