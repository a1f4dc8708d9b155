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

/// An archive checked by `SecureExtractor`: its members in order, with their bytes in the
/// decompressed image, and what each path of the tree holds once they are all written. Every
/// collision the writer would meet (a file where a directory is, a path through a file, a link
/// over another member) is refused here, before anything is written or compiled from it.
///
/// `@unchecked Sendable`: built on one thread, then only read (the writer thread and the
/// compile read it at once).
final class ArchivePlan: @unchecked Sendable {
    enum Step {
        case directory([Substring], member: String)
        case file([Substring], mode: mode_t, offset: Int, size: Int, member: String)
        case hardlink([Substring], target: [Substring], member: String)
    }

    struct Link {
        var parent: [Substring]
        var name: Substring
        var target: String
        var member: String

        var components: [Substring] { parent + [name] }
    }

    let image: ArchiveImage
    let archiveName: String
    private(set) var steps: [Step] = []
    /// Symlinks, created after every other member (see `checkLinks`).
    var links: [Link] = []
    /// The regular files of the finished tree and where their bytes are.
    private(set) var files: [String: (offset: Int, size: Int)] = [:]
    private var directories: Set<String> = []

    init(image: ArchiveImage, archiveName: String) {
        self.image = image
        self.archiveName = archiveName
    }

    private func refuse(_ member: String, _ why: String) -> HeaderError { SecureExtractor.refuse(archiveName, member, why) }

    static func path(_ components: [Substring]) -> String { components.joined(separator: "/") }

    func add(_ step: Step) throws(HeaderError) {
        switch step {
        case .directory(let components, let member):
            try addDirectory(components, member: member)
        case .file(let components, _, let offset, let size, let member):
            try addDirectory(Array(components.dropLast()), member: member)
            let path = Self.path(components)
            // A later file of the same name replaces an earlier one, as tar does.
            guard !directories.contains(path) else { throw refuse(member, "collides with a directory or symlink of the same name") }
            files[path] = (offset, size)
        case .hardlink(let components, let target, let member):
            // Hard links may only point at a regular file unpacked earlier from the same archive.
            let targetPath = Self.path(target)
            guard !target.isEmpty, let bytes = files[targetPath] else {
                throw refuse(member, "is a hard link to '\(targetPath.escapingControlCharacters)', which is not a file unpacked from the archive")
            }
            try addDirectory(Array(components.dropLast()), member: member)
            let path = Self.path(components)
            guard files[path] == nil, !directories.contains(path) else {
                throw refuse(member, "cannot be linked to '\(targetPath.escapingControlCharacters)' (\(Errno(EEXIST)))")
            }
            files[path] = bytes
        }
        steps.append(step)
    }

    private func addDirectory(_ components: [Substring], member: String) throws(HeaderError) {
        var path = ""
        for component in components {
            path += path.isEmpty ? String(component) : "/" + component
            if directories.contains(path) { continue }
            guard files[path] == nil else { throw refuse(member, "leads through a symlink or a file") }
            directories.insert(path)
        }
    }

    /// Checks the symlinks once the whole tree is known, so that the check sees every link a
    /// target could pass through.
    func checkLinks() throws(HeaderError) {
        let table = linkTable()
        var seen: Set<String> = []
        for link in links {
            guard SecureExtractor.staysInside(from: link.parent, target: link.target, links: table) else {
                throw refuse(link.member, "is a symlink to '\(link.target)', which leads outside the archive")
            }
            try addDirectory(link.parent, member: link.member)
            let path = Self.path(link.components)
            guard files[path] == nil, !directories.contains(path), seen.insert(path).inserted else {
                throw refuse(link.member, "collides with another member of the same name")
            }
        }
    }

    private func linkTable() -> [String: (parent: [Substring], target: String)] {
        var table: [String: (parent: [Substring], target: String)] = [:]
        for link in links { table[Self.path(link.components)] = (link.parent, link.target) }
        return table
    }

    /// Every file of the finished tree with its bytes, a symlink at its own path with its
    /// target's bytes; nil when a symlink leads to a directory, which a list of files cannot show.
    func servedFiles() -> [(path: String, offset: Int, size: Int)]? {
        var served = files.map { (path: $0.key, offset: $0.value.offset, size: $0.value.size) }
        let table = linkTable()
        for link in links {
            guard let target = SecureExtractor.resolve(from: link.parent, target: link.target, links: table) else { return nil }
            let targetPath = Self.path(target)
            if let bytes = files[targetPath] {
                served.append((Self.path(link.components), bytes.offset, bytes.size))
            } else if directories.contains(targetPath) || target.isEmpty {
                return nil
            }
            // A dangling link is as absent from memory as it is from the written tree.
        }
        return served
    }

    /// Contents of the finished tree's file at `path`.
    func contents(of path: String) -> [UInt8]? {
        guard let (offset, size) = files[path] else { return nil }
        return Array(UnsafeRawBufferPointer(start: image.base + offset, count: size))
    }

    func isDirectory(_ path: String) -> Bool { directories.contains(path) }

    /// Writes the tree below the directory open at `rootFD`, flushing it to disk as it goes
    /// (`Writeback`); returns what the manifest lists.
    func write(into rootFD: Int32) throws(HeaderError) -> [TreeMember] {
        let writer = TreeWriter(rootFD: rootFD, archiveName: archiveName, writeback: Writeback(flushing: rootFD))
        for step in steps { try writer.write(step, image: image) }
        try writer.createLinks(links)
        return writer.members
    }
}

/// Makes checked members into files below a directory descriptor without ever leaving it.
///
/// Every directory is opened component by component with `openat(O_NOFOLLOW)` from the root
/// descriptor, so neither a member nor a symlink created earlier can redirect a write; each stays
/// open for the members below it (nothing the writer does can remove or replace a directory it
/// opened). Symlinks are created last.
final class TreeWriter {
    /// Directories kept open at once; past this the cache starts over (a kheaders tree has ~350).
    static let maxOpenDirectories = 256

    private let rootFD: Int32
    private let archiveName: String
    /// Told of each file written, to flush the tree as it grows (a cache entry's); nil for a
    /// plain directory.
    private let writeback: Writeback?
    private var directories: [String: Int32] = [:]
    private(set) var members: [TreeMember] = []

    init(rootFD: Int32, archiveName: String, writeback: Writeback? = nil) {
        self.rootFD = rootFD
        self.archiveName = archiveName
        self.writeback = writeback
    }

    deinit {
        closeDirectories()
        writeback?.finish()
    }

    private func refuse(_ member: String, _ why: String) -> HeaderError { SecureExtractor.refuse(archiveName, member, why) }

    func write(_ step: ArchivePlan.Step, image: ArchiveImage) throws(HeaderError) {
        switch step {
        case .directory(let components, let member):
            _ = try directory(components[...], member: member, create: true)
        case .file(let components, let mode, let offset, let size, let member):
            try writeFile(components, mode: mode, bytes: UnsafeRawBufferPointer(start: image.base + offset, count: size), member: member)
        case .hardlink(let components, let target, let member):
            try link(components, to: target, member: member)
        }
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

    private func writeFile(_ components: [Substring], mode: mode_t, bytes: UnsafeRawBufferPointer, member: String) throws(HeaderError) {
        let parent = try directory(components.dropLast(), member: member, create: true)
        let file = try create(String(components.last!), in: parent, mode: mode, member: member, components: components)
        do {
            try FileSystem.writeAll(bytes, to: file.rawValue)
        } catch {
            throw HeaderError("cannot write '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(error)")
        }
        writeback?.wrote(bytes.count)
        members.append(TreeMember(path: ArchivePlan.path(components), kind: .file(size: Int64(bytes.count))))
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
        let path = ArchivePlan.path(components)
        members.removeAll { $0.path == path }
        do throws(Errno) {
            return try FileDescriptor.open(name, relativeTo: parent, flags, mode: mode)
        } catch {
            throw HeaderError("cannot create '\(member.escapingControlCharacters)' while unpacking \(archiveName): \(error)")
        }
    }

    /// A hard link to a file written earlier (the plan checked that it was).
    private func link(_ components: [Substring], to target: [Substring], member: String) throws(HeaderError) {
        let targetPath = ArchivePlan.path(target)
        guard let size = members.last(where: { $0.path == targetPath }).flatMap({ m -> Int64? in
            if case .file(let size) = m.kind { return size }
            return nil
        }) else {
            throw refuse(member, "is a hard link to '\(targetPath.escapingControlCharacters)', which is not a file unpacked from the archive")
        }
        let targetParent = try directory(target.dropLast(), member: member, create: false)
        // Opening `parent` may close the cached descriptor of `targetParent`: keep a copy.
        let targetDup = dup(targetParent)
        guard targetDup >= 0 else { throw HeaderError("cannot link '\(member.escapingControlCharacters)': \(Errno.current)", kind: .internal) }
        let targetDirectory = FileDescriptor(owning: targetDup)
        let parent = try directory(components.dropLast(), member: member, create: true)
        guard linkat(targetDirectory.rawValue, String(target.last!), parent, String(components.last!), 0) == 0 else {
            throw refuse(member, "cannot be linked to '\(targetPath.escapingControlCharacters)' (\(Errno.current))")
        }
        members.append(TreeMember(path: ArchivePlan.path(components), kind: .file(size: size)))
    }

    /// Creates the symlinks the plan checked, once every other member is in place.
    func createLinks(_ links: [ArchivePlan.Link]) throws(HeaderError) {
        for link in links {
            let parent = try directory(link.parent[...], member: link.member, create: true)
            guard symlinkat(link.target, parent, String(link.name)) == 0 else {
                if errno == EEXIST { throw refuse(link.member, "collides with another member of the same name") }
                throw HeaderError("cannot create symlink '\(link.member)' while unpacking \(archiveName): \(Errno.current)")
            }
            members.append(TreeMember(path: ArchivePlan.path(link.components), kind: .symlink))
        }
    }
}
