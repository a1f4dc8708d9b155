import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Directory operations relative to descriptors that never follow a symlink, for the cache.
enum TreeOps {
    static func token() -> String { AtomicFile.token() }

    /// Names in the directory open at `fd` (not "." or ".."), unsorted.
    static func list(_ fd: Int32) -> [String] { DirectoryListing.names(in: fd) }

    static func list(path: String) -> [String] {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY | O_DIRECTORY) else { return [] }
        return list(fd.rawValue)
    }

    /// Removes `name` below `parentFD` and everything in it; symlinks are removed, never followed.
    @discardableResult
    static func remove(_ name: String, in parentFD: Int32) -> Bool {
        if unlinkat(parentFD, name, 0) == 0 { return true }
        guard errno == EISDIR || errno == EPERM else { return errno == ENOENT }
        guard let fd = try? FileDescriptor.openDirectory(name, relativeTo: parentFD) else { return false }
        for child in list(fd.rawValue) { remove(child, in: fd.rawValue) }
        _ = consume fd
        return unlinkat(parentFD, name, AT_REMOVEDIR) == 0
    }

    /// Opens the directory `name` below `parentFD`, refusing a symlink; nil when it cannot.
    static func openDirectory(_ name: String, in parentFD: Int32) -> FileDescriptor? {
        try? FileDescriptor.openDirectory(name, relativeTo: parentFD)
    }

    /// Writes `bytes` to `name` below `dirFD` through a uniquely named temp file, fsynced and
    /// renamed into place, so readers never see a partial file. Without `durable` there is no
    /// fsync: for the files of a temporary tree that one syncfs makes durable before the tree
    /// is renamed into place.
    static func writeAtomically(_ bytes: [UInt8], name: String, in dirFD: Int32, mode: mode_t = 0o644,
                                durable: Bool = true) throws(Errno) {
        try AtomicFile.write(bytes, to: name, relativeTo: dirFD, mode: mode, durable: durable)
    }

    /// The contents of `name` below `dirFD` (not through a symlink), or nil; nil too past `limit`.
    static func read(_ name: String, in dirFD: Int32, limit: Int = 64 << 20) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(name, relativeTo: dirFD, O_RDONLY | O_NOFOLLOW) else { return nil }
        return try? fd.readAll(limit: limit)
    }

    static func canonical(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A directory of the cache, open, with its path for messages.
struct OpenDirectory: ~Copyable {
    let path: String
    let descriptor: FileDescriptor

    var fd: Int32 { descriptor.rawValue }

    /// Opens `path` as a directory that is not a symlink; the error advises KPROBE_RUN_CACHE_DIR.
    init(_ path: String, what: String = "the cache directory") throws(HeaderError) {
        do {
            descriptor = try FileDescriptor.openDirectory(path)
        } catch {
            throw HeaderError("cannot open \(what) \(path): \(error); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        self.path = path
    }
}

/// The lock of a cache directory (`FileLock`), with the errors and the waiting message of the
/// header cache.
struct CacheLock: ~Copyable {
    private let lock: FileLock

    init(_ name: String, in dirFD: Int32, display: String, log: @Sendable (String) -> Void) throws(HeaderError) {
        do {
            lock = try FileLock(name, relativeTo: dirFD) { log("waiting for another kprobe-run to finish with \(display)") }
        } catch {
            throw HeaderError("cannot lock \(display): \(error); remove it or set KPROBE_RUN_CACHE_DIR")
        }
    }

    /// See `FileLock.held`.
    borrowing func held() {}
}
