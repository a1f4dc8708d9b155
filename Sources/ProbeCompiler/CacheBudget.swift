import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// The bound on what compiles leave in the cache: compiled objects (`objects/`) and precompiled
/// headers (`pch/`, ~14 MiB each, one per include block and flag set). Past the bound the
/// least recently used go first. A use is recorded by touching the file's modification time
/// (one utimensat on a cache hit); the bound is enforced after a compile that missed, which
/// has just spent far longer than the directory walk costs, so a cached run never pays for it.
/// Header trees and vmlinux.h are not counted: one per kernel, removed by `headers prune`.
public struct CacheBudget: Sendable {
    /// 256 MiB: the objects of hundreds of probes and a dozen precompiled headers.
    public static let defaultBytes: Int64 = 256 << 20
    /// Megabytes; 0 keeps no object or precompiled header beyond the run that made it.
    public static let environmentVariable = "KPROBE_RUN_CACHE_MAX_MB"

    public var root: CacheRoot
    public var maxBytes: Int64

    public init(root: CacheRoot, environment: [String: String] = Environment.current) {
        self.root = root
        maxBytes = environment[Self.environmentVariable].flatMap { Int64($0) }.map { max(0, $0) << 20 } ?? Self.defaultBytes
    }

    /// One thing the bound counts: an object with its `.deps`, or a precompiled header.
    public struct Item: Sendable, Equatable {
        public var directory: String
        /// The files removed together, the first one being the one whose time says when it was used.
        public var names: [String]
        public var bytes: Int64
        public var lastUse: Int
    }

    /// Everything counted, least recently used first.
    public func items() -> [Item] {
        var result: [Item] = []
        for (directory, suffix, companion) in [("objects", ".o", ".deps"), ("pch", ".pch", nil as String?)] {
            let path = root.path + "/" + directory
            guard (try? SecureDirectory.check(path)) != nil, let fd = try? FileDescriptor.openDirectory(path) else { continue }
            for name in DirectoryListing.names(in: fd.rawValue) where name.hasSuffix(suffix) && !name.hasPrefix(".") {
                var st = stat()
                guard fstatat(fd.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                var names = [name]
                var bytes = Int64(st.st_size)
                if let companion {
                    let other = String(name.dropLast(suffix.count)) + companion
                    var companionStat = stat()
                    if fstatat(fd.rawValue, other, &companionStat, AT_SYMLINK_NOFOLLOW) == 0 {
                        names.append(other)
                        bytes += Int64(companionStat.st_size)
                    }
                }
                result.append(Item(directory: path, names: names, bytes: bytes, lastUse: st.st_mtim.tv_sec))
            }
        }
        return result.sorted { $0.lastUse < $1.lastUse }
    }

    public var usedBytes: Int64 { items().reduce(0) { $0 + $1.bytes } }

    /// Removes the least recently used items until the rest fits in `maxBytes` (everything with
    /// `all`), and temporaries of writers that died; returns the paths removed.
    @discardableResult
    public func enforce(all: Bool = false) -> [String] {
        var removed = root.removeDeadTemporaries()
        var items = items()
        var total = items.reduce(0) { $0 + $1.bytes }
        while let oldest = items.first, all || total > maxBytes {
            items.removeFirst()
            total -= oldest.bytes
            // The object first: a lookup needs both, so an object without its .deps is never used.
            for name in oldest.names where unlink(oldest.directory + "/" + name) == 0 {
                removed.append(oldest.directory + "/" + name)
            }
        }
        return removed
    }

    /// Records a use of `path` (a cache hit, a loaded precompiled header).
    public static func touch(_ path: String) {
        _ = utimensat(AT_FDCWD, path, nil, 0)
    }
}
