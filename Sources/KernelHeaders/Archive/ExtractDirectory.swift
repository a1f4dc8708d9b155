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
        let parentDirectory: FileDescriptor
        do {
            parentDirectory = try FileDescriptor.open(parent, O_RDONLY | O_DIRECTORY)
        } catch {
            throw HeaderError("cannot open \(parent): \(error)", kind: .usage)
        }
        let parentFD = parentDirectory.rawValue
        var st = stat()
        var replaceEmpty = false
        if fstatat(parentFD, base, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            guard let existing = TreeOps.openDirectory(base, in: parentFD) else {
                throw HeaderError("\(directory) exists and is not a directory; name a new or empty directory", kind: .usage)
            }
            guard TreeOps.list(existing.rawValue).isEmpty else {
                throw HeaderError("\(directory) is not empty; name a new or empty directory", kind: .usage)
            }
            replaceEmpty = true
        }
        let temporary = ".\(base).tmp-\(getpid())-\(TreeOps.token())"
        guard mkdirat(parentFD, temporary, 0o700) == 0 else {
            throw HeaderError("cannot create a directory in \(parent): \(Errno.current)", kind: .usage)
        }
        let tempDirectory: FileDescriptor
        do {
            tempDirectory = try FileDescriptor.openDirectory(temporary, relativeTo: parentFD)
        } catch {
            TreeOps.remove(temporary, in: parentFD)
            throw HeaderError("cannot open \(parent)/\(temporary): \(error)")
        }
        do throws(HeaderError) {
            let tempFD = tempDirectory.rawValue
            // Like tar, no durability is promised here.
            _ = try SecureExtractor.extract(archive.bytes, archiveName: name, into: tempFD, limits: limits, progress: nil,
                                       flushing: false)
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
