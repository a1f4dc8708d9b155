#if canImport(Glibc)
import Glibc
#endif

/// Files that appear whole or not at all: written under a temporary name in the same directory,
/// flushed, then renamed into place. The temporary name carries the writer's pid, so that
/// leftovers of a writer killed mid-write can be told from files still being written.
public enum AtomicFile {
    private static let marker = ".tmp-"

    /// A short random part, so that threads of one process get distinct names too.
    public static func token() -> String {
        String(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff, radix: 16)
    }

    /// `.<name>.tmp-<pid>-<token>` beside `path` (a name, or a path whose directory it keeps).
    public static func temporaryName(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return "\(directory).\(base)\(marker)\(getpid())-\(token())"
    }

    /// The pid of the writer of a temporary name made by `temporaryName` (or by versions before
    /// it: `NAME.tmp.<pid>`), nil for other names.
    public static func writer(ofTemporary name: String) -> pid_t? {
        if name.hasPrefix("."), let range = name.ranges(of: marker).last {
            let rest = name[range.upperBound...]
            guard let dash = rest.firstIndex(of: "-") else { return nil }
            return pid_t(rest[..<dash])
        }
        guard let range = name.ranges(of: ".tmp.").last else { return nil }
        return pid_t(name[range.upperBound...])
    }

    /// Whether the writer of a temporary name is gone (its file can be removed).
    public static func isLeftover(_ name: String) -> Bool {
        guard let pid = writer(ofTemporary: name), pid > 0 else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// Writes `bytes` to `path` (relative to the directory `directory`, or AT_FDCWD) atomically;
    /// with `durable` the data reaches the disk before the rename.
    public static func write(_ bytes: [UInt8], to path: String, relativeTo directory: Int32, mode: mode_t,
                             durable: Bool = true) throws(Errno) {
        let temporary = temporaryName(for: path)
        do throws(Errno) {
            let fd = try FileDescriptor.open(temporary, relativeTo: directory, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
            try fd.writeAll(bytes)
            if durable { try fd.sync() }
            try fd.close()
            try commit(temporary, to: path, relativeTo: directory)
        } catch {
            unlinkat(directory, temporary, 0)
            throw error
        }
    }

    /// Renames a finished temporary file into place.
    public static func commit(_ temporary: String, to path: String, relativeTo directory: Int32) throws(Errno) {
        guard renameat(directory, temporary, directory, path) == 0 else { throw Errno.current }
    }

    /// Removes the temporary files of dead writers in the directory open at `directory`; returns
    /// their names. Call it where no writer of ours can start meanwhile or where a live writer's
    /// file is left alone anyway (a live pid is never touched).
    @discardableResult
    public static func removeLeftovers(in directory: Int32) -> [String] {
        var removed: [String] = []
        for name in DirectoryListing.names(in: directory) where isLeftover(name) {
            if unlinkat(directory, name, 0) == 0 { removed.append(name) }
        }
        return removed
    }
}

/// Names in a directory.
public enum DirectoryListing {
    /// Names in the directory open at `fd` (not "." or ".."), unsorted; empty when unreadable.
    public static func names(in fd: Int32) -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0 else { return [] }
        guard let dir = fdopendir(copy) else {
            close(copy)
            return []
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }
}

/// An exclusive flock(2) on a lock file, held until the value goes away. flock locks belong to
/// the open file description, so threads of one process exclude each other as processes do, and
/// a killed holder's lock is released by the kernel.
public struct FileLock: ~Copyable {
    private let descriptor: FileDescriptor

    /// Opens (creating) `name` below `directory` and locks it; `waiting` is called once when
    /// another holder makes this wait.
    public init(_ name: String, relativeTo directory: Int32, waiting: () -> Void = {}) throws(Errno) {
        let fd = try FileDescriptor.open(name, relativeTo: directory, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        if flock(fd.rawValue, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK else { throw Errno.current }
            waiting()
            guard retryOnInterrupt({ flock(fd.rawValue, LOCK_EX) }) == 0 else { throw Errno.current }
        }
        descriptor = fd
    }

    /// A use of the lock, for `defer { lock.held() }`: it says that the lock is meant to be held
    /// to the end of the scope (where a noncopyable value is destroyed, which unlocks it).
    public borrowing func held() {}
}
