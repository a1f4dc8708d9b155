import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// Compiled objects kept between runs: `<cache>/objects/<key>.o` and, next to it,
/// `<key>.deps`, which lists the files from outside the cache that the compile read (the
/// probe's own headers, -I directories, a header tree used in place) with their size,
/// modification time and digest. A hit needs the key and every listed file to match.
///
/// The key covers the probe, every flag, the virtual files, the header entry's identity, the
/// tool's version and the worker binary's size and modification time. Files inside the cache
/// root are not listed: entries there are written once and named by what they hold.
public struct CompileCache: Sendable {
    public var root: CacheRoot
    /// `HeaderSet.identity` of the headers the request's flags point at.
    public var headerIdentity: String
    public var toolVersion: String
    /// Whether compiles that miss may build and load precompiled headers (`<cache>/pch`).
    public var precompiledHeaders: Bool

    public init(root: CacheRoot, headerIdentity: String, toolVersion: String = KprobeRunVersion.string,
                precompiledHeaders: Bool = true) {
        self.root = root
        self.headerIdentity = headerIdentity
        self.toolVersion = toolVersion
        self.precompiledHeaders = precompiledHeaders
    }

    static let manifestMagic = "kprobe-run compile cache 1"

    /// Lower-case hex SHA-256 naming the entry for `request` compiled by the worker
    /// `workerIdentity` in `workingDirectory`, against which clang resolves a relative probe
    /// path and the probe's own quoted includes (and which the object's debug info names).
    public func key(for request: CompileRequest, workerIdentity: String, workingDirectory: String) -> String {
        var keyed = request
        // Where precompiled headers live changes nothing in the object.
        keyed.precompiledHeaders = nil
        // Nor whether the headers were read from memory while their entry was written.
        keyed.headerImage = nil
        var hasher = SHA256()
        for part in [Self.manifestMagic, toolVersion, workerIdentity, headerIdentity, workingDirectory] {
            hasher.update("\(part.utf8.count):")
            hasher.update(part)
        }
        WorkerProtocol.encode(keyed).withUnsafeBytes { hasher.update($0) }
        return hasher.hexDigest()
    }

    /// The cached object for `key`, or nil when there is none or it cannot be trusted: a
    /// missing, damaged or mismatched manifest, or a listed file that changed.
    public func lookup(key: String) -> CompiledObject? {
        guard let directory = try? existingObjectsDirectory() else { return nil }
        let base = directory + "/" + key
        guard let elf = try? FileSystem.read(base + ".o", limit: InputLimit.probe),
              let manifestBytes = try? FileSystem.read(base + ".deps", limit: InputLimit.probe),
              let manifest = Manifest.parse(manifestBytes),
              manifest.objectSize == elf.count, manifest.objectDigest == SHA256.hex(elf),
              manifest.files.allSatisfy({ $0.isUnchanged() })
        else { return nil }
        CacheBudget.touch(base + ".o")
        return CompiledObject(elf: elf, diagnostics: manifest.diagnostics, dependencies: manifest.files.map(\.path),
                              notes: ["compile cache hit: \(base).o"], fromCache: true)
    }

    /// Writes the entry: the manifest first, then the object, each atomically, so a reader
    /// that finds the object finds its manifest. `workingDirectory` resolves relative paths.
    /// Neither is flushed to the disk (two fsyncs, ~10 ms before every new probe can load): after
    /// a crash a file the disk lost is a miss, since `lookup` accepts only a manifest that parses
    /// to its last byte and an object of the size and digest it records.
    public func store(_ object: CompiledObject, key: String, virtualPaths: Set<String>, workingDirectory: String) throws(Failure) {
        let directory = try root.directory("objects")
        var files: [Manifest.File] = []
        for dependency in Set(object.dependencies).sorted() {
            let path = dependency.hasPrefix("/") ? dependency : workingDirectory + "/" + dependency
            if virtualPaths.contains(dependency) || dependency.hasPrefix(Self.virtualPrefix) || isInsideCache(path) { continue }
            guard let file = Manifest.File(path: path) else {
                throw Failure(.internal, "cannot record \(path) for the compile cache: it cannot be read or its name cannot be stored")
            }
            files.append(file)
        }
        let manifest = Manifest(objectSize: object.elf.count, objectDigest: SHA256.hex(object.elf), files: files,
                                diagnostics: object.diagnostics)
        let base = directory + "/" + key
        do {
            try AtomicFile.write(manifest.encoded(), to: base + ".deps", relativeTo: AT_FDCWD, mode: 0o600, durable: false)
            try AtomicFile.write(object.elf, to: base + ".o", relativeTo: AT_FDCWD, mode: 0o600, durable: false)
        } catch {
            throw Failure(.internal, "cannot write the compile cache entry \(base).o: \(error)")
        }
        CacheBudget(root: root).enforce()
    }

    /// The precompiled-header directory for a compile that misses, when enabled and usable.
    func precompiledHeaderSettings() -> PrecompiledHeaderSettings? {
        guard precompiledHeaders, let directory = try? root.directory("pch") else { return nil }
        return PrecompiledHeaderSettings(directory: directory, headerIdentity: headerIdentity)
    }

    static let virtualPrefix = "/kprobe-run-virtual/"

    private func isInsideCache(_ path: String) -> Bool {
        let prefix = root.path.hasSuffix("/") ? root.path : root.path + "/"
        return path.hasPrefix(prefix)
    }

    /// The objects directory if it exists and passes the ownership and mode checks; a lookup
    /// creates nothing.
    private func existingObjectsDirectory() throws(Failure) -> String {
        try SecureDirectory.check(root.path)
        let directory = root.path + "/objects"
        try SecureDirectory.check(directory)
        return directory
    }
}

/// The text next to a cached object: what it must match and which outside files it read.
struct Manifest: Equatable {
    struct File: Equatable {
        var path: String
        var size: Int64
        var modified: String
        var digest: String

        /// Reads the file now.
        init?(path: String) {
            guard !path.contains("\n"), let bytes = try? FileSystem.read(path), let modified = Self.modified(path) else { return nil }
            self.path = path
            size = Int64(bytes.count)
            self.modified = modified
            digest = SHA256.hex(bytes)
        }

        init(path: String, size: Int64, modified: String, digest: String) {
            self.path = path
            self.size = size
            self.modified = modified
            self.digest = digest
        }

        static func modified(_ path: String) -> String? {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        }

        /// Same size and modification time, or (after a touch or a copy) the same contents.
        func isUnchanged() -> Bool {
            var st = stat()
            guard stat(path, &st) == 0, Int64(st.st_size) == size else { return false }
            if "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" == modified { return true }
            guard let bytes = try? FileSystem.read(path) else { return false }
            return SHA256.hex(bytes) == digest
        }
    }

    var objectSize: Int
    var objectDigest: String
    var files: [File]
    var diagnostics: String

    func encoded() -> [UInt8] {
        var text = CompileCache.manifestMagic + "\n"
        text += "object \(objectSize) \(objectDigest)\n"
        for file in files { text += "file \(file.size) \(file.modified) \(file.digest) \(file.path)\n" }
        text += "diagnostics \(diagnostics.utf8.count)\n"
        return Array(text.utf8) + Array(diagnostics.utf8)
    }

    static func parse(_ bytes: [UInt8]) -> Manifest? {
        var lines: [Substring] = []
        var index = 0
        var lineStart = 0
        var diagnosticsStart = -1
        while index < bytes.count {
            if bytes[index] == 0x0a {
                let line = Substring(String(decoding: bytes[lineStart..<index], as: UTF8.self))
                lines.append(line)
                lineStart = index + 1
                if line.hasPrefix("diagnostics ") {
                    diagnosticsStart = lineStart
                    break
                }
            }
            index += 1
        }
        guard diagnosticsStart >= 0, lines.count >= 3, lines[0] == CompileCache.manifestMagic else { return nil }
        let object = lines[1].split(separator: " ")
        guard object.count == 3, object[0] == "object", let objectSize = Int(object[1]), object[2].count == 64 else { return nil }
        var files: [File] = []
        for line in lines[2..<(lines.count - 1)] {
            let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: false)
            guard fields.count == 5, fields[0] == "file", let size = Int64(fields[1]), fields[3].count == 64, fields[4].hasPrefix("/") else {
                return nil
            }
            files.append(File(path: String(fields[4]), size: size, modified: String(fields[2]), digest: String(fields[3])))
        }
        let diagnosticsLine = lines[lines.count - 1].split(separator: " ")
        guard diagnosticsLine.count == 2, let count = Int(diagnosticsLine[1]), bytes.count - diagnosticsStart == count else { return nil }
        let diagnostics = String(decoding: bytes[diagnosticsStart...], as: UTF8.self)
        return Manifest(objectSize: objectSize, objectDigest: String(object[2]), files: files, diagnostics: diagnostics)
    }
}
