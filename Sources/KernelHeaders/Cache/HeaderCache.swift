import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

import CLibELF

/// The name of the running kernel's entries: `<release>-<first 12 hex of sha256(build id or release)>`.
/// Found without reading any archive, so a second run in the same boot loads no module.
struct KernelKey: Sendable {
    var release: String
    var buildID: String?

    static var running: KernelKey { KernelKey(release: RunningKernel.release, buildID: RunningKernel.buildID) }

    var entryName: String { "\(release)-\(String(SHA256.hex(buildID ?? release).prefix(12)))" }

    var description: String {
        buildID.map { "\(release), build id \($0.prefix(16))…" } ?? release
    }
}

/// An unpacked, verified header tree in the cache.
struct CacheEntry: Sendable {
    var name: String
    var path: String
    var manifest: Manifest
}

/// An archive to unpack and what to record about it.
struct ArchiveBytes: Sendable {
    var bytes: [UInt8]
    /// For messages: the file or member it came from.
    var name: String

    /// Computed once per unpack (4 MiB take ~2 ms with the CPU's SHA-256 instructions, ~15 ms
    /// without): `install` is given it when it is known.
    var digest: String { SHA256.hex(bytes) }
}

/// `<cache>/headers`: unpacked kheaders trees, each complete with its MANIFEST, created under
/// `headers/.lock` so that concurrent first runs unpack once.
struct HeaderCache {
    static let lockName = ".lock"
    static let temporaryPrefix = ".tmp-"
    static let discardedPrefix = ".old-"
    static let supportName = ".support"

    var root: CacheRoot
    var log: @Sendable (String) -> Void

    func headersDirectory() throws(HeaderError) -> String {
        do {
            return try root.directory("headers")
        } catch {
            throw HeaderError(error)
        }
    }

    private func openHeaders() throws(HeaderError) -> OpenDirectory {
        try OpenDirectory(try headersDirectory(), what: "the header cache")
    }

    /// The entry `name` if it exists and verifies.
    func verifiedEntry(_ name: String) throws(HeaderError) -> CacheEntry? {
        let headers = try openHeaders()
        let (path, fd) = (headers.path, headers.fd)
        return verifiedEntry(name, dirPath: path, dirFD: fd)
    }

    private func verifiedEntry(_ name: String, dirPath: String, dirFD: Int32) -> CacheEntry? {
        guard let entry = TreeOps.openDirectory(name, in: dirFD) else { return nil }
        guard let st = try? entry.status(), st.st_uid == geteuid(), st.st_mode & 0o022 == 0,
              let manifest = Manifest.verified(entryFD: entry.rawValue) else {
            log("cache entry \(dirPath)/\(name) is incomplete or damaged; it will be unpacked again")
            return nil
        }
        return CacheEntry(name: name, path: dirPath + "/" + name, manifest: manifest)
    }

    /// An entry unpacked from an archive with this digest, whatever release it was named after.
    private func entry(forDigest digest: String, dirPath: String, dirFD: Int32) -> CacheEntry? {
        let suffix = "-" + digest.prefix(12)
        for name in TreeOps.list(dirFD) where name.hasSuffix(suffix) && !name.hasPrefix(".") {
            if let entry = verifiedEntry(name, dirPath: dirPath, dirFD: dirFD), entry.manifest.archiveDigest == digest {
                return entry
            }
        }
        return nil
    }

    func entry(forDigest digest: String) throws(HeaderError) -> CacheEntry? {
        let headers = try openHeaders()
        let (path, fd) = (headers.path, headers.fd)
        return entry(forDigest: digest, dirPath: path, dirFD: fd)
    }

    /// The running kernel's entry: reused if it verifies, otherwise unpacked from what `obtain`
    /// returns (called only under the lock and only if no other process unpacked it meanwhile).
    /// With `inBackground`, an entry that must be unpacked is written on a thread of its own and
    /// comes back with its `PendingHeaders` (see there).
    func kernelEntry(_ key: KernelKey, limits: ExtractionLimits, progress: ExtractionProgress?, inBackground: Bool = false,
                     obtain: () throws(HeaderError) -> ArchiveBytes) throws(HeaderError) -> (CacheEntry, PendingHeaders?) {
        let name = key.entryName
        return try install(limits: limits, progress: progress, fallbackRelease: key.release, key: .kernel, inBackground: inBackground,
                           knownDigest: nil, lookup: { path, fd in verifiedEntry(name, dirPath: path, dirFD: fd) },
                           obtain: obtain, name: { _, _ in name })
    }

    /// The entry for an archive given directly: named `<release from the archive>-<digest12>`,
    /// so the same archive from a .tar.xz and a .ko lands in one entry.
    func archiveEntry(_ archive: ArchiveBytes, limits: ExtractionLimits, progress: ExtractionProgress?,
                      inBackground: Bool = false) throws(HeaderError) -> (CacheEntry, PendingHeaders?) {
        let digest = archive.digest
        return try install(limits: limits, progress: progress, fallbackRelease: "unknown", key: .archive, inBackground: inBackground,
                           knownDigest: digest, lookup: { path, fd in entry(forDigest: digest, dirPath: path, dirFD: fd) },
                           obtain: { archive }, name: { release, _ in "\(release)-\(digest.prefix(12))" })
    }

    /// The header lock, held by a value that can move to the thread that writes an entry.
    private final class HeldLock: @unchecked Sendable {
        let lock: CacheLock
        init(_ lock: consuming CacheLock) { self.lock = lock }
    }

    private func install(limits: ExtractionLimits, progress: ExtractionProgress?, fallbackRelease: String,
                         key: Manifest.Key, inBackground: Bool, knownDigest: String?,
                         lookup: (String, Int32) -> CacheEntry?,
                         obtain: () throws(HeaderError) -> ArchiveBytes,
                         name: (String, String) -> String) throws(HeaderError) -> (CacheEntry, PendingHeaders?) {
        let headers = try openHeaders()
        let (dirPath, dirFD) = (headers.path, headers.fd)
        if let entry = lookup(dirPath, dirFD) { return (entry, nil) }

        let lock = HeldLock(try CacheLock(HeaderCache.lockName, in: dirFD, display: dirPath + "/" + HeaderCache.lockName, log: log))
        defer { withExtendedLifetime(lock) {} }
        if let entry = lookup(dirPath, dirFD) {
            log("another kprobe-run unpacked \(entry.path) meanwhile; using it")
            return (entry, nil)
        }
        removeLeftovers(dirFD: dirFD, dirPath: dirPath)

        let archive = try obtain()
        let digest = knownDigest ?? archive.digest
        let temporary = "\(HeaderCache.temporaryPrefix)\(getpid())-\(TreeOps.token())"
        guard mkdirat(dirFD, temporary, 0o700) == 0 else {
            throw HeaderError("cannot create \(dirPath)/\(temporary): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        let started = MonotonicClock.now
        if inBackground, let (entry, pending) = try pendingEntry(archive, digest: digest, limits: limits, key: key,
                                                                   fallbackRelease: fallbackRelease, temporary: temporary,
                                                                   headersFD: dirFD, headersPath: dirPath, lock: lock, name: name) {
            log("compiling from \(archive.name) in memory (decompressed in \(MonotonicClock.milliseconds(since: started)) ms) while \(entry.path) is written")
            return (entry, pending)
        }
        do throws(HeaderError) {
            let tempDirectory = try Self.openTemporary(temporary, in: dirFD, path: dirPath)
            let members = try SecureExtractor.extract(archive.bytes, archiveName: archive.name, into: tempDirectory.rawValue,
                                                      limits: limits, progress: progress, flushing: true)
            try Self.requireKheadersFiles(Set(members.map(\.path)), archiveName: archive.name)
            let release = KernelFlags.release(ofTreeAt: tempDirectory.rawValue) ?? fallbackRelease
            let entry = try complete(members: members, temporary: temporary, tempFD: tempDirectory.rawValue, headersFD: dirFD,
                                     headersPath: dirPath, manifest: Manifest(key: key, archiveDigest: digest, release: release, members: []),
                                     entryName: name(release, digest))
            log("unpacked \(archive.name) (\(entry.manifest.members.count) files, \(entry.manifest.totalBytes / 1024) KiB) into \(entry.path) in \(MonotonicClock.milliseconds(since: started)) ms")
            return (entry, nil)
        } catch {
            TreeOps.remove(temporary, in: dirFD)
            throw error
        }
    }

    /// Checks the archive and starts writing it into `temporary` on a thread of its own, which
    /// then holds `lock`; nil when the tree cannot be served from memory (a symlink to a
    /// directory, no memfd), and the caller unpacks it as usual.
    private func pendingEntry(_ archive: ArchiveBytes, digest: String, limits: ExtractionLimits, key: Manifest.Key,
                              fallbackRelease: String, temporary: String, headersFD: Int32, headersPath: String,
                              lock: HeldLock, name: (String, String) -> String) throws(HeaderError) -> (CacheEntry, PendingHeaders)? {
        let plan: ArchivePlan
        do {
            plan = try SecureExtractor.plan(archive.bytes, archiveName: archive.name, limits: limits)
            try Self.requireKheadersFiles(Set(plan.files.keys), archiveName: archive.name)
        } catch {
            TreeOps.remove(temporary, in: headersFD)
            throw error
        }
        guard plan.image.fd >= 0, var files = plan.servedFiles() else { return nil }
        let workarounds = Array(KernelFlags.asmWorkarounds.utf8)
        guard let offset = plan.image.append(workarounds) else { return nil }
        files.append((KernelFlags.asmWorkaroundsPath, offset, workarounds.count))

        let release = plan.contents(of: KernelFlags.utsReleasePath).flatMap(KernelFlags.parseRelease) ?? fallbackRelease
        let entryName = name(release, digest)
        let manifest = Manifest(key: key, archiveDigest: digest, release: release, members: [])
        let entry = CacheEntry(name: entryName, path: headersPath + "/" + entryName, manifest: manifest)
        let pending = PendingHeaders(plan: plan, root: entry.path, files: files,
                                     lockPath: headersPath + "/" + HeaderCache.lockName)
        let duplicated = dup(headersFD)
        guard duplicated >= 0 else { return nil }
        let headersCopy = HeldDirectory(FileDescriptor(owning: duplicated))
        let archiveName = archive.name
        let log = self.log
        let started = MonotonicClock.now
        try pending.start { () throws(HeaderError) in
            let headersFD = headersCopy.descriptor.rawValue
            do throws(HeaderError) {
                let tempDirectory = try Self.openTemporary(temporary, in: headersFD, path: headersPath)
                let members = try plan.write(into: tempDirectory.rawValue)
                let written = try self.complete(members: members, temporary: temporary, tempFD: tempDirectory.rawValue,
                                                headersFD: headersFD, headersPath: headersPath, manifest: manifest, entryName: entryName)
                log("wrote \(archiveName) (\(written.manifest.members.count) files, \(written.manifest.totalBytes / 1024) KiB) into \(written.path) in \(MonotonicClock.milliseconds(since: started)) ms")
            } catch {
                TreeOps.remove(temporary, in: headersFD)
                throw error
            }
            withExtendedLifetime(lock) {}
        }
        return (entry, pending)
    }

    private static func openTemporary(_ temporary: String, in headersFD: Int32, path: String) throws(HeaderError) -> FileDescriptor {
        do {
            return try FileDescriptor.openDirectory(temporary, relativeTo: headersFD)
        } catch {
            throw HeaderError("cannot open \(path)/\(temporary): \(error); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
    }

    /// A directory descriptor that can move to the writer thread.
    private final class HeldDirectory: @unchecked Sendable {
        let descriptor: FileDescriptor
        init(_ descriptor: consuming FileDescriptor) { self.descriptor = descriptor }
    }

    /// The end of every unpack (its files written, most of them already flushed by `Writeback`):
    /// the forced-include header and the MANIFEST, one flush of the whole tree, then the rename
    /// into place and the directory's fsync.
    ///
    /// Nothing inside the temporary directory is ever used, so the MANIFEST is written there
    /// without an fsync of its own: the syncfs makes it durable together with every file it
    /// names, and only then does the rename make the entry visible. A power loss before the
    /// rename is durable leaves the temporary directory (removed by the next unpack); after it,
    /// an entry whose files and MANIFEST were all on disk before its name was.
    private func complete(members: [TreeMember], temporary: String, tempFD: Int32, headersFD: Int32, headersPath: String,
                          manifest: Manifest, entryName: String) throws(HeaderError) -> CacheEntry {
        var manifest = manifest
        manifest.members = members
        manifest.members.append(try KernelFlags.writeAsmWorkarounds(into: tempFD, display: headersPath + "/" + temporary))
        do {
            try TreeOps.writeAtomically(manifest.encoded(), name: Manifest.fileName, in: tempFD, durable: false)
        } catch {
            throw HeaderError("cannot write the manifest in \(headersPath)/\(temporary): \(error); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        // One syncfs for the whole tree instead of an fsync per file (~6,400 journal commits).
        guard kprobe_run_syncfs(tempFD) == 0 else {
            throw HeaderError("cannot flush the unpacked headers in \(headersPath)/\(temporary) to disk: \(Errno.current); nothing was cached. Check the disk, or set KPROBE_RUN_CACHE_DIR to a directory on another filesystem")
        }
        discard(entryName, dirFD: headersFD)
        guard renameat(headersFD, temporary, headersFD, entryName) == 0 else {
            throw HeaderError("cannot move the unpacked headers into \(headersPath)/\(entryName): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        fsync(headersFD)
        return CacheEntry(name: entryName, path: headersPath + "/" + entryName, manifest: manifest)
    }

    /// Files every kheaders archive holds (kernel/gen_kheaders.sh copies include/ of the source
    /// and build trees). An archive cut at a tar end-of-archive block unpacks without an error
    /// and lacks them; cached, it would fail every compile with "kconfig.h file not found".
    static let requiredFiles = ["include/linux/kconfig.h", "include/generated/autoconf.h"]

    static func requireKheadersFiles(_ paths: Set<String>, archiveName: String) throws(HeaderError) {
        let missing = requiredFiles.filter { !paths.contains($0) }
        guard missing.isEmpty else {
            throw HeaderError("\(archiveName.escapingControlCharacters) is incomplete: it lacks \(missing.joined(separator: " and ")), which every kheaders archive holds (it was cut short, or is not a kheaders archive); nothing was cached. Fetch the archive again or use another --headers source")
        }
    }

    /// Unloads the kheaders module if a run of ours loaded it and was killed before unloading it
    /// (`ModuleRecord`). Costs one faccessat when there is no record.
    func unloadModuleLeftBehind() {
        guard let headers = try? openHeaders(),
              faccessat(headers.fd, ModuleRecord.name, F_OK, AT_SYMLINK_NOFOLLOW) == 0,
              let lock = try? CacheLock(HeaderCache.lockName, in: headers.fd, display: headers.path + "/" + HeaderCache.lockName, log: log)
        else { return }
        defer { lock.held() }
        _ = ModuleRecord(headersDirectory: headers.path).cleanUp(
            isLoaded: KheadersModule.isLoaded, unload: { KheadersModule.unload(log: log) }, log: log)
    }

    /// Moves an existing (damaged) entry out of the way and deletes it.
    private func discard(_ name: String, dirFD: Int32) {
        var st = stat()
        guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        let aside = "\(HeaderCache.discardedPrefix)\(getpid())-\(TreeOps.token())"
        if renameat(dirFD, name, dirFD, aside) == 0 {
            TreeOps.remove(aside, in: dirFD)
        } else {
            TreeOps.remove(name, in: dirFD)
        }
    }

    /// Temp and discarded directories of interrupted runs. Only called with the lock held: every
    /// live extraction holds it, so whatever is left is dead.
    private func removeLeftovers(dirFD: Int32, dirPath: String) {
        for name in TreeOps.list(dirFD) where name.hasPrefix(HeaderCache.temporaryPrefix) || name.hasPrefix(HeaderCache.discardedPrefix) {
            log("removing \(dirPath)/\(name) left by an interrupted run")
            TreeOps.remove(name, in: dirFD)
        }
    }

    /// A file given with --headers is read and hashed only the first time: its digest and kind
    /// are remembered under `headers/.digests`, keyed by path and checked against the file's
    /// device, inode, size and modification time, so an unchanged archive costs a stat.
    func rememberedDigest(of path: String) -> (digest: String, kind: HeaderSourceKind)? {
        guard let stamp = HeaderCache.stamp(path),
              let bytes = try? FileSystem.read(root.path + "/headers/\(HeaderCache.digestsName)/" + HeaderCache.memoName(path)) else { return nil }
        let fields = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        guard fields.count == 3, fields[0] == stamp, fields[1].count == 64,
              let kind = HeaderSourceKind(rawValue: fields[2]) else { return nil }
        return (fields[1], kind)
    }

    func remember(digest: String, kind: HeaderSourceKind, of path: String) {
        guard let stamp = HeaderCache.stamp(path),
              let dir = try? root.directory("headers", HeaderCache.digestsName) else { return }
        guard let directory = try? FileDescriptor.openDirectory(dir) else { return }
        try? TreeOps.writeAtomically(Array("\(stamp)\n\(digest)\n\(kind.rawValue)\n".utf8), name: HeaderCache.memoName(path), in: directory.rawValue)
    }

    static let digestsName = ".digests"

    private static func memoName(_ path: String) -> String { String(SHA256.hex(path).prefix(24)) }

    private static func stamp(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return "\(st.st_dev) \(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }

    /// The forced-include header for trees used in place (they are not ours to write into).
    func supportFile() throws(HeaderError) -> String {
        let dir: String
        do {
            dir = try root.directory("headers", HeaderCache.supportName)
        } catch {
            throw HeaderError(error)
        }
        let support = try OpenDirectory(dir)
        let fd = support.fd
        let name = KernelFlags.asmWorkaroundsFile
        let wanted = Array(KernelFlags.asmWorkarounds.utf8)
        if TreeOps.read(name, in: fd) != wanted {
            do {
                try TreeOps.writeAtomically(wanted, name: name, in: fd)
            } catch {
                throw HeaderError("cannot write \(dir)/\(name): \(error); set KPROBE_RUN_CACHE_DIR to a writable directory")
            }
        }
        return dir + "/" + name
    }

    /// Removes header entries not of the running kernel (other releases, or this release built
    /// differently), vmlinux.h of other kernels and leftovers of interrupted runs.
    func prune(keepingRelease release: String, keepingKey keep: String) throws(HeaderError) -> [String] {
        var removed: [String] = []
        let headers = try openHeaders()
        let (dirPath, dirFD) = (headers.path, headers.fd)
        do {
            let lock = try CacheLock(HeaderCache.lockName, in: dirFD, display: dirPath + "/" + HeaderCache.lockName, log: log)
            defer { lock.held() }
            for name in TreeOps.list(dirFD).sorted() {
                if name == HeaderCache.digestsName {
                    TreeOps.remove(name, in: dirFD)
                    continue
                }
                let isLeftover = name.hasPrefix(HeaderCache.temporaryPrefix) || name.hasPrefix(HeaderCache.discardedPrefix)
                if name.hasPrefix("."), !isLeftover { continue }
                var drop = isLeftover || HeaderCache.release(ofEntry: name) != release
                if !drop {
                    let entry = verifiedEntry(name, dirPath: dirPath, dirFD: dirFD)
                    drop = entry == nil || (entry!.manifest.key == .kernel && name != keep)
                }
                if drop, TreeOps.remove(name, in: dirFD) { removed.append(dirPath + "/" + name) }
            }
        }
        // Temporaries of compiles that were killed (the compile cache's and precompiled headers').
        removed += root.removeDeadTemporaries()
        let btfPath: String
        do {
            btfPath = try root.directory("btf")
        } catch {
            throw HeaderError(error)
        }
        guard let btf = try? FileDescriptor.openDirectory(btfPath) else { return removed }
        let btfFD = btf.rawValue
        let lock = try CacheLock(HeaderCache.lockName, in: btfFD, display: btfPath + "/" + HeaderCache.lockName, log: log)
        defer { lock.held() }
        for name in TreeOps.list(btfFD).sorted() where name != HeaderCache.lockName && name != keep {
            if TreeOps.remove(name, in: btfFD) { removed.append(btfPath + "/" + name) }
        }
        return removed
    }

    /// `<release>` of `<release>-<digest12>`.
    static func release(ofEntry name: String) -> String? {
        guard name.count > 13 else { return nil }
        let cut = name.index(name.endIndex, offsetBy: -13)
        guard name[cut] == "-", name[name.index(after: cut)...].allSatisfy(\.isHexDigit) else { return nil }
        return String(name[..<cut])
    }
}
