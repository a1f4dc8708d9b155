import CLibArchive
import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// One member of an unpacked tree as the manifest records it.
struct TreeMember: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        case file(size: Int64)
        case symlink
    }
    var path: String
    var kind: Kind
}

/// Reports unpacking progress: members done, bytes written.
typealias ExtractionProgress = (Int, Int64) -> Void

/// Unpacks a kheaders tar.xz below a directory descriptor without ever leaving it.
///
/// Every directory is opened component by component with `openat(O_NOFOLLOW)` from the root
/// descriptor, so neither a member nor a symlink created earlier can redirect a write; each stays
/// open for the members below it (nothing the extractor does can remove or replace a directory it
/// opened). Symlinks are created last, each only after its target has been resolved through every
/// other symlink in the archive and found to stay inside the tree.
///
/// The xz stream is decompressed on a second thread (`DecompressionPipe`); this one parses the
/// tar stream and writes the files.
final class SecureExtractor {
    /// Directories kept open at once; past this the cache starts over (a kheaders tree has ~350).
    static let maxOpenDirectories = 256
    /// Room in the tar stream for each member's header blocks and padding, beyond its data.
    static let tarOverheadPerEntry: Int64 = 4096
    /// Room for the end-of-archive blocks and the record padding after them.
    static let tarTrailer: Int64 = 1 << 20

    private let rootFD: Int32
    private let archiveName: String
    private let limits: ExtractionLimits
    private let progress: ExtractionProgress?

    private var directories: [String: Int32] = [:]
    private var members: [TreeMember] = []
    private var writtenFiles: Set<String> = []
    private var pendingLinks: [(parent: [Substring], name: Substring, target: String, member: String)] = []
    private var entryCount = 0
    private var totalBytes: Int64 = 0
    private var buffer = [UInt8](repeating: 0, count: 1 << 18)

    private init(rootFD: Int32, archiveName: String, limits: ExtractionLimits, progress: ExtractionProgress?) {
        self.rootFD = rootFD
        self.archiveName = archiveName
        self.limits = limits
        self.progress = progress
    }

    deinit { closeDirectories() }

    static let xzMagic: [UInt8] = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]

    /// Unpacks `archive` (xz-compressed tar) into the directory open at `rootFD`; returns the
    /// regular files and symlinks written. On error the caller removes the directory.
    /// Nothing is flushed here: the cache flushes the whole tree at once (syncfs) afterwards.
    static func extract(_ archive: [UInt8], archiveName: String, into rootFD: Int32, limits: ExtractionLimits,
                        progress: ExtractionProgress?) throws(HeaderError) -> [TreeMember] {
        guard archive.starts(with: xzMagic) else {
            throw HeaderError("\(archiveName) is not an xz-compressed archive (kheaders archives are .tar.xz); point --headers at the kernel's kheaders.tar.xz, kheaders.ko, a vmlinux or a header directory")
        }
        let extractor = SecureExtractor(rootFD: rootFD, archiveName: archiveName, limits: limits, progress: progress)
        let result = archive.withUnsafeBytes { bytes in
            Result { () throws(HeaderError) -> [TreeMember] in try extractor.run(bytes) }
        }
        return try result.get()
    }

    /// The most the tar stream inside may decompress to: the unpacked-size cap plus room for
    /// every allowed member's headers. Data libarchive skips (the contents of a directory entry,
    /// say) counts here although it is never written.
    static func maxStreamBytes(_ limits: ExtractionLimits) -> Int64 {
        let headers = Int64(limits.maxEntries).multipliedReportingOverflow(by: tarOverheadPerEntry)
        let data = limits.maxTotalBytes.addingReportingOverflow(headers.partialValue)
        let total = data.partialValue.addingReportingOverflow(tarTrailer)
        return headers.overflow || data.overflow || total.overflow ? .max : total.partialValue
    }

    private func run(_ archive: UnsafeRawBufferPointer) throws(HeaderError) -> [TreeMember] {
        let pipe = try DecompressionPipe(archive, archiveName: archiveName, maxBytes: Self.maxStreamBytes(limits))
        defer { pipe.stop() }
        guard let reader = archive_read_new() else { throw HeaderError("cannot allocate an archive reader", kind: .internal) }
        defer { archive_read_free(reader) }
        // Only what kheaders produces: the pipe accepts nothing but xz and this reader nothing but
        // tar, with no filter of its own, so no other decompressor or format is reachable from an
        // untrusted file.
        archive_read_support_format_tar(reader)
        archive_read_support_format_gnutar(reader)
        guard pipe.open(reader) == ARCHIVE_OK else {
            throw pipe.error ?? damaged(reader)
        }
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(reader, &entry)
            if status == ARCHIVE_EOF { break }
            guard status >= ARCHIVE_WARN, let entry else { throw pipe.error ?? damaged(reader) }
            try unpack(entry, reader: reader, pipe: pipe)
            if let progress, entryCount % 256 == 0 { progress(entryCount, totalBytes) }
        }
        // xz's integrity check, at the very end of the stream, vouches for every member above.
        try pipe.drain()
        guard entryCount > 0 else {
            throw HeaderError("\(archiveName) is an empty archive; it holds no kernel headers")
        }
        try createLinks()
        progress?(entryCount, totalBytes)
        return members
    }

    private func damaged(_ reader: OpaquePointer) -> HeaderError { Self.corrupt(archiveName, reader) }

    static func corrupt(_ archiveName: String, _ reader: OpaquePointer) -> HeaderError {
        let detail = archive_error_string(reader).map { String(cString: $0) } ?? "unreadable data"
        return HeaderError("\(archiveName) is truncated or corrupt (\(detail)); fetch the archive again or use another --headers source")
    }

    static func notXZ(_ archiveName: String) -> HeaderError {
        HeaderError("\(archiveName) is not an xz-compressed archive; point --headers at the kernel's kheaders.tar.xz, kheaders.ko, a vmlinux or a header directory")
    }

    private func refuse(_ member: String, _ why: String) -> HeaderError {
        HeaderError("refusing \(archiveName): member '\(member.escapingControlCharacters)' \(why); nothing was unpacked from it. Use the kernel's own kheaders archive or another --headers source")
    }

    private func unpack(_ entry: OpaquePointer, reader: OpaquePointer, pipe: DecompressionPipe) throws(HeaderError) {
        guard let rawName = archive_entry_pathname(entry) else {
            throw refuse("?", "has no usable name")
        }
        let member = String(cString: rawName)
        entryCount += 1
        guard entryCount <= limits.maxEntries else {
            throw refuse(member, "exceeds the limit of \(limits.maxEntries) members")
        }
        let components = try normalized(member, member: member)
        let type = archive_entry_filetype(entry)

        if let hardlink = archive_entry_hardlink(entry) {
            guard !components.isEmpty else { throw refuse(member, "is a hard link in place of the root") }
            try link(components, to: String(cString: hardlink), member: member)
            return
        }
        switch type {
        case S_IFDIR:
            if !components.isEmpty { _ = try directory(components[...], member: member, create: true) }
        case S_IFREG:
            guard !components.isEmpty else { throw refuse(member, "is a file in place of the root") }
            try writeFile(components, entry: entry, reader: reader, pipe: pipe, member: member)
        case S_IFLNK:
            guard !components.isEmpty else { throw refuse(member, "is a symlink in place of the root") }
            guard let target = archive_entry_symlink(entry).map({ String(cString: $0) }), !target.isEmpty else {
                throw refuse(member, "is a symlink without a target")
            }
            guard !target.contains("\n") else { throw refuse(member, "has a newline in its symlink target") }
            pendingLinks.append((Array(components.dropLast()), components.last!, target, member))
        case S_IFCHR, S_IFBLK:
            throw refuse(member, "is a device node")
        case S_IFIFO:
            throw refuse(member, "is a fifo")
        case S_IFSOCK:
            throw refuse(member, "is a socket")
        default:
            throw refuse(member, "has an unsupported file type")
        }
    }

    /// Splits a member name into components; refuses absolute names and `..`.
    private func normalized(_ name: String, member: String) throws(HeaderError) -> [Substring] {
        if name.hasPrefix("/") { throw refuse(member, "has an absolute path") }
        if name.contains("\n") { throw refuse(member, "has a newline in its name") }
        var result: [Substring] = []
        for component in name.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." { throw refuse(member, "has a '..' component") }
            result.append(component)
        }
        return result
    }

    /// Opens (optionally creating) the directory `components` below the root without following
    /// symlinks, through the directories already open. The descriptor belongs to the cache: it
    /// stays valid until the next call.
    private func directory(_ components: ArraySlice<Substring>, member: String, create: Bool) throws(HeaderError) -> Int32 {
        if components.isEmpty { return rootFD }
        let key = components.joined(separator: "/")
        if let fd = directories[key] { return fd }
        let parent = try directory(components.dropLast(), member: member, create: create)
        let name = String(components.last!)
        // In a fresh tree most directories are new: create first, then open what is there (a
        // symlink in the way makes mkdirat fail with EEXIST and the open refuse it).
        if create, mkdirat(parent, name, 0o755) != 0, errno != EEXIST {
            throw HeaderError("cannot create directory for '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(Errno.current)")
        }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let err = Errno.current
            if err.rawValue == ELOOP || err.rawValue == ENOTDIR {
                throw refuse(member, "leads through a symlink or a file")
            }
            throw HeaderError("cannot open directory for '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(err)")
        }
        // Only after the open: `parent` may be one of the descriptors closed here.
        if directories.count >= Self.maxOpenDirectories { closeDirectories() }
        directories[key] = fd
        return fd
    }

    private func closeDirectories() {
        for fd in directories.values { close(fd) }
        directories.removeAll()
    }

    private func writeFile(_ components: [Substring], entry: OpaquePointer, reader: OpaquePointer,
                           pipe: DecompressionPipe, member: String) throws(HeaderError) {
        if archive_entry_size_is_set(entry) != 0, totalBytes + archive_entry_size(entry) > limits.maxTotalBytes {
            throw refuse(member, "would take the unpacked size over the limit of \(limits.maxTotalBytes) bytes")
        }
        let parent = try directory(components.dropLast(), member: member, create: true)
        let name = String(components.last!)
        // No setuid, setgid, sticky or group/other write; always readable and replaceable by us.
        let mode = (archive_entry_perm(entry) & 0o755) | 0o600
        let file = try create(name, in: parent, mode: mode, member: member, components: components)
        let fd = file.rawValue
        var size: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { archive_read_data(reader, $0.baseAddress, $0.count) }
            if n == 0 { break }
            guard n > 0 else { throw pipe.error ?? damaged(reader) }
            size += Int64(n)
            totalBytes += Int64(n)
            guard totalBytes <= limits.maxTotalBytes else {
                throw refuse(member, "takes the unpacked size over the limit of \(limits.maxTotalBytes) bytes")
            }
            do {
                try FileSystem.writeAll(buffer[..<n], to: fd)
            } catch {
                throw HeaderError("cannot write '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(error)")
            }
        }
        let path = self.pathOf(components)
        writtenFiles.insert(path)
        members.append(TreeMember(path: path, kind: .file(size: size)))
    }

    /// Creates the file `name` in `parent`; a later member of the same name replaces an earlier
    /// file, as tar does, and anything else in the way (a directory, a symlink) is refused.
    private func create(_ name: String, in parent: Int32, mode: mode_t, member: String,
                        components: [Substring]) throws(HeaderError) -> FileDescriptor {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
        do throws(Errno) {
            return try FileDescriptor.open(name, relativeTo: parent, flags, mode: mode)
        } catch {
            guard error.rawValue == EEXIST else {
                throw HeaderError("cannot create '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(error)")
            }
        }
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw refuse(member, "collides with a directory or symlink of the same name")
        }
        unlinkat(parent, name, 0)
        members.removeAll { $0.path == self.pathOf(components) }
        do throws(Errno) {
            return try FileDescriptor.open(name, relativeTo: parent, flags, mode: mode)
        } catch {
            throw HeaderError("cannot create '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(error)")
        }
    }

    private func pathOf(_ components: [Substring]) -> String { components.joined(separator: "/") }

    /// Hard links may only point at a regular file unpacked earlier from the same archive.
    private func link(_ components: [Substring], to target: String, member: String) throws(HeaderError) {
        let targetComponents = try normalized(target, member: member)
        let targetPath = self.pathOf(targetComponents)
        guard !targetComponents.isEmpty, writtenFiles.contains(targetPath),
              let size = members.last(where: { $0.path == targetPath }).flatMap({ m -> Int64? in
                  if case .file(let size) = m.kind { return size }
                  return nil
              }) else {
            throw refuse(member, "is a hard link to '\(target.escapingControlCharacters)', which is not a file unpacked from the archive")
        }
        let targetParent = try directory(targetComponents.dropLast(), member: member, create: false)
        // Opening `parent` may close the cached descriptor of `targetParent`: keep a copy.
        let targetDup = dup(targetParent)
        guard targetDup >= 0 else { throw HeaderError("cannot link '\(member.escapingControlCharacters)': \(Errno.current)", kind: .internal) }
        let targetDirectory = FileDescriptor(owning: targetDup)
        let parent = try directory(components.dropLast(), member: member, create: true)
        let name = String(components.last!)
        guard linkat(targetDirectory.rawValue, String(targetComponents.last!), parent, name, 0) == 0 else {
            throw refuse(member, "cannot be linked to '\(target.escapingControlCharacters)' (\(Errno.current))")
        }
        let path = self.pathOf(components)
        writtenFiles.insert(path)
        members.append(TreeMember(path: path, kind: .file(size: size)))
    }

    /// Creates the symlinks once the whole tree is known, so that the check sees every link a
    /// target could pass through.
    private func createLinks() throws(HeaderError) {
        guard !pendingLinks.isEmpty else { return }
        var links: [String: (parent: [Substring], target: String)] = [:]
        for link in pendingLinks {
            links[pathOf(link.parent + [link.name])] = (link.parent, link.target)
        }
        for link in pendingLinks {
            guard SecureExtractor.staysInside(from: link.parent, target: link.target, links: links) else {
                throw refuse(link.member, "is a symlink to '\(link.target)', which leads outside the archive")
            }
        }
        for link in pendingLinks {
            let parent = try directory(link.parent[...], member: link.member, create: true)
            guard symlinkat(link.target, parent, String(link.name)) == 0 else {
                if errno == EEXIST { throw refuse(link.member, "collides with another member of the same name") }
                throw HeaderError("cannot create symlink '\(link.member)' while unpacking \(archiveName): \(Errno.current)")
            }
            members.append(TreeMember(path: pathOf(link.parent + [link.name]), kind: .symlink))
        }
    }

    /// Resolves `target` as the kernel would from directory `start`, expanding every symlink
    /// of the archive met on the way; false as soon as the path climbs above the root.
    static func staysInside(from start: [Substring], target: String,
                            links: [String: (parent: [Substring], target: String)]) -> Bool {
        if target.hasPrefix("/") { return false }
        var current = start
        var pending = Array(target.split(separator: "/", omittingEmptySubsequences: true).reversed())
        var hops = 0
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                if current.isEmpty { return false }
                current.removeLast()
                continue
            }
            current.append(component)
            if let link = links[current.joined(separator: "/")] {
                hops += 1
                if hops > 40 || link.target.hasPrefix("/") { return false }
                current.removeLast()
                pending.append(contentsOf: link.target.split(separator: "/", omittingEmptySubsequences: true).reversed())
            }
        }
        return true
    }
}
