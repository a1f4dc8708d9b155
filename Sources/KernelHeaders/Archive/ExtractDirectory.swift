import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// `headers extract`: the cache's secure extraction into a directory of the user's choosing,
/// through a temp directory beside it so that a failed extraction leaves nothing behind.
enum ExtractDirectory {
    static func unpack(_ archive: ArchiveBytes, named name: String, into directory: String,
                       limits: ExtractionLimits) throws(HeaderError) {
        var target = directory
        while target.count > 1, target.hasSuffix("/") { target.removeLast() }
        let slash = target.lastIndex(of: "/")
        let parent = slash.map { $0 == target.startIndex ? "/" : String(target[..<$0]) } ?? "."
        let base = slash.map { String(target[target.index(after: $0)...]) } ?? target
        guard !base.isEmpty, base != ".", base != ".." else {
            throw HeaderError("cannot extract into \(directory): name a new or empty directory", kind: .usage)
        }
        let parentFD = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentFD >= 0 else {
            throw HeaderError("cannot open \(parent): \(Errno.current)", kind: .usage)
        }
        defer { close(parentFD) }
        var st = stat()
        var replaceEmpty = false
        if fstatat(parentFD, base, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            let existing = TreeOps.openDirectory(base, in: parentFD)
            guard existing >= 0 else {
                throw HeaderError("\(directory) exists and is not a directory; name a new or empty directory", kind: .usage)
            }
            let empty = TreeOps.list(existing).isEmpty
            close(existing)
            guard empty else {
                throw HeaderError("\(directory) is not empty; name a new or empty directory", kind: .usage)
            }
            replaceEmpty = true
        }
        let temporary = ".\(base).tmp-\(getpid())-\(TreeOps.token())"
        guard mkdirat(parentFD, temporary, 0o700) == 0 else {
            throw HeaderError("cannot create a directory in \(parent): \(Errno.current)", kind: .usage)
        }
        let tempFD = TreeOps.openDirectory(temporary, in: parentFD)
        guard tempFD >= 0 else {
            let err = Errno.current
            TreeOps.remove(temporary, in: parentFD)
            throw HeaderError("cannot open \(parent)/\(temporary): \(err)")
        }
        do throws(HeaderError) {
            defer { close(tempFD) }
            // Like tar, no durability is promised here, so no early writeback either.
            _ = try SecureExtractor.extract(archive.bytes, archiveName: name, into: tempFD, limits: limits,
                                            startWriteback: false, progress: nil)
            fchmod(tempFD, 0o755)
            if replaceEmpty { unlinkat(parentFD, base, AT_REMOVEDIR) }
            guard renameat(parentFD, temporary, parentFD, base) == 0 else {
                throw HeaderError("cannot move the unpacked tree to \(directory): \(Errno.current)")
            }
        } catch {
            TreeOps.remove(temporary, in: parentFD)
            throw error
        }
    }
}
