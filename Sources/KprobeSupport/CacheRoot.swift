#if canImport(Glibc)
import Glibc
#endif

/// The one directory that holds everything kprobe-run keeps between runs (headers, vmlinux.h,
/// compiled objects). See DESIGN.md, "Cache layout".
public struct CacheRoot: Sendable, Equatable {
    public var path: String

    public init(path: String) { self.path = path }

    /// Where the cache lives, in order: `$KPROBE_RUN_CACHE_DIR`; for root, /var/cache/kprobe-run,
    /// or on systems without /var (Android) `$TMPDIR/kprobe-run` or /data/local/tmp/kprobe-run;
    /// otherwise `$XDG_CACHE_HOME/kprobe-run` or ~/.cache/kprobe-run.
    public static func resolve(environment: [String: String] = Environment.current) -> CacheRoot {
        if let explicit = environment["KPROBE_RUN_CACHE_DIR"], !explicit.isEmpty {
            return CacheRoot(path: explicit)
        }
        if geteuid() == 0 {
            if FileSystem.isDirectory("/var") { return CacheRoot(path: "/var/cache/kprobe-run") }
            if let tmp = environment["TMPDIR"], !tmp.isEmpty, FileSystem.isDirectory(tmp) {
                return CacheRoot(path: tmp + "/kprobe-run")
            }
            return CacheRoot(path: "/data/local/tmp/kprobe-run")
        }
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            return CacheRoot(path: xdg + "/kprobe-run")
        }
        let home = environment["HOME"] ?? "/"
        return CacheRoot(path: home + "/.cache/kprobe-run")
    }

    /// Removes the temporaries of writers that died (`AtomicFile`) in the compile cache's
    /// directories; returns their paths.
    public func removeDeadTemporaries(in directories: [String] = ["objects", "pch"]) -> [String] {
        var removed: [String] = []
        for directory in directories {
            guard let fd = try? FileDescriptor.openDirectory(path + "/" + directory) else { continue }
            removed += AtomicFile.removeLeftovers(in: fd.rawValue).map { path + "/" + directory + "/" + $0 }
        }
        return removed
    }

    /// Creates (or checks) the root and the given subdirectories, every one 0700, owned by the
    /// invoking user and reached without following a symlink; returns the innermost path.
    @discardableResult
    public func directory(_ components: String...) throws(Failure) -> String {
        try SecureDirectory.ensure(root: path, components: components)
    }
}

/// Directory creation that cannot be redirected by another user: BCC's predictable
/// /tmp/kheaders-<release> (CVE-2024-2314) is the failure this exists to avoid.
public enum SecureDirectory {
    /// Every refusal of, and failure to make, a cache directory: exit 4, as the cache is where
    /// kernel headers are kept (README, "Exit codes"), whichever stage meets it first.
    public static let failureKind = FailureKind.noKernelHeaders

    /// Android's adb shell user (AID_SHELL), who owns /data/local/tmp: the operator at the other
    /// end of adb, trusted there as OpenSSH trusts root.
    static let androidShellUID: uid_t = 2000

    /// Makes `root` (creating missing parents as needed), then each of `components` inside it.
    /// The root and every component must be a real directory (not a symlink), owned by the
    /// effective user and not writable by group or others; anything else is refused.
    public static func ensure(root: String, components: [String]) throws(Failure) -> String {
        try createParents(of: root)
        try checkAncestors(of: root)
        var directory = try openChecked(parent: AT_FDCWD, name: root, display: root)
        var path = root
        for component in components {
            guard !component.isEmpty, !component.contains("/"), component != ".", component != ".." else {
                throw Failure(SecureDirectory.failureKind, "invalid cache path component '\(component)'")
            }
            path += "/" + component
            directory = try openChecked(parent: directory.rawValue, name: component, display: path)
        }
        return path
    }

    /// Refuses a root with an ancestor that another user (not root) could write: that user could
    /// rename the cache away and put their own tree in its place while a compile reads it. As in
    /// OpenSSH's and sudo's checks, an ancestor must belong to root or to us and be writable by
    /// no one else, unless it is sticky (/tmp): there others cannot rename what is ours. A
    /// symlink on the way is followed and its target's ancestors are checked too.
    public static func checkAncestors(of root: String) throws(Failure) {
        var absolute = root
        if !absolute.hasPrefix("/") {
            guard let cwd = getcwd(nil, 0) else { throw Failure(failureKind, "cannot resolve \(root): \(Errno.current)") }
            absolute = String(cString: cwd) + "/" + root
            free(cwd)
        }
        var prefix = ""
        try checkAncestor("/", display: root)
        for part in absolute.split(separator: "/").dropLast() {
            prefix += "/" + part
            var st = stat()
            guard lstat(prefix, &st) == 0 else { throw Failure(failureKind, "cannot inspect \(prefix), above the cache directory \(root): \(Errno.current)") }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                guard let resolved = realpath(prefix, nil) else { throw Failure(failureKind, "cannot resolve \(prefix), above the cache directory \(root): \(Errno.current)") }
                let target = String(cString: resolved)
                free(resolved)
                try checkAncestors(of: target + "/.")
            } else {
                try checkAncestor(prefix, display: root)
            }
        }
    }

    private static func checkAncestor(_ path: String, display root: String) throws(Failure) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(failureKind, "cannot inspect \(path), above the cache directory \(root): \(Errno.current)") }
        let trustedOwner = st.st_uid == 0 || st.st_uid == geteuid() || (st.st_uid == androidShellUID && AndroidSystem.isAndroid)
        guard trustedOwner else {
            throw Failure(failureKind, "refusing the cache directory \(root): \(path) above it belongs to uid \(st.st_uid), who could replace the cache while it is used; set KPROBE_RUN_CACHE_DIR to a directory whose parents only root and you can write")
        }
        guard st.st_mode & 0o022 == 0 || st.st_mode & S_ISVTX != 0 else {
            throw Failure(failureKind, "refusing the cache directory \(root): \(path) above it is writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8))) and not sticky, so they could replace the cache while it is used; set KPROBE_RUN_CACHE_DIR elsewhere or run chmod go-w \(path)")
        }
    }

    /// Checks an existing directory the same way, without creating anything.
    public static func check(_ path: String) throws(Failure) {
        try checkAncestors(of: path)
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw Failure(SecureDirectory.failureKind, "cannot inspect cache directory \(path): \(Errno.current)")
        }
        try verify(st, path: path)
    }

    private static func createParents(of path: String) throws(Failure) {
        var prefix = ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        for part in parts {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0, errno != EEXIST {
                throw Failure(SecureDirectory.failureKind, "cannot create directory \(prefix): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
            }
        }
    }

    private static func openChecked(parent: Int32, name: String, display: String) throws(Failure) -> FileDescriptor {
        if mkdirat(parent, name, 0o700) != 0, errno != EEXIST {
            throw Failure(SecureDirectory.failureKind, "cannot create cache directory \(display): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.openDirectory(name, relativeTo: parent)
        } catch {
            if error.rawValue == ELOOP || error.rawValue == ENOTDIR {
                throw Failure(SecureDirectory.failureKind, "refusing cache path \(display): it is a symlink or not a directory; remove it or set KPROBE_RUN_CACHE_DIR")
            }
            throw Failure(SecureDirectory.failureKind, "cannot open cache directory \(display): \(error)")
        }
        let st: stat
        do {
            st = try fd.status()
        } catch {
            throw Failure(SecureDirectory.failureKind, "cannot inspect cache directory \(display): \(error)")
        }
        try verify(st, path: display)
        return fd
    }

    private static func verify(_ st: stat, path: String) throws(Failure) {
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw Failure(SecureDirectory.failureKind, "refusing cache path \(path): it is a symlink or not a directory; remove it or set KPROBE_RUN_CACHE_DIR")
        }
        guard st.st_uid == geteuid() else {
            throw Failure(SecureDirectory.failureKind, "refusing cache directory \(path): owned by uid \(st.st_uid), not by you (uid \(geteuid())); remove it or set KPROBE_RUN_CACHE_DIR")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw Failure(SecureDirectory.failureKind, "refusing cache directory \(path): writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8))); run chmod 700 on it")
        }
    }
}
