import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// What `headers status` reports. Gathering it loads nothing and unpacks nothing.
public struct HeaderStatus: Sendable, CustomStringConvertible {
    public struct Source: Sendable {
        public var kind: HeaderSourceKind
        public var location: String
        public var available: Bool
        public var note: String
    }

    public struct Entry: Sendable {
        public enum Kind: String, Sendable {
            case headers, btf, leftover
        }
        public var kind: Kind
        public var path: String
        public var bytes: Int64
        public var valid: Bool
        public var ofRunningKernel: Bool
    }

    public var release: String
    public var machine: String
    public var buildID: String?
    public var cacheRoot: String
    public var sources: [Source]
    /// The source a run would use, and why.
    public var chosen: Source?
    public var reason: String
    public var entries: [Entry]
    /// Set when a run of ours loaded the kheaders module and has not unloaded it.
    public var moduleNote: String?

    public var description: String {
        var lines = ["kernel: \(release) (\(machine))\(buildID.map { ", build id \($0)" } ?? "")"]
        lines.append("sources, in order of preference:")
        for source in sources {
            lines.append("  [\(source.available ? "x" : " ")] \(source.kind.rawValue): \(source.location)\(source.note.isEmpty ? "" : " — \(source.note)")")
        }
        if let chosen {
            lines.append("a run uses: \(chosen.kind.rawValue) (\(chosen.location)): \(reason)")
        } else {
            lines.append("a run uses: nothing — \(reason)")
        }
        if let moduleNote { lines.append(moduleNote) }
        lines.append("cache: \(cacheRoot)")
        if entries.isEmpty { lines.append("  (empty)") }
        for entry in entries {
            var flags: [String] = []
            if entry.ofRunningKernel { flags.append("running kernel") }
            if !entry.valid { flags.append(entry.kind == .leftover ? "left by an interrupted run" : "damaged, will be unpacked again") }
            lines.append("  \(entry.kind.rawValue): \(entry.path)  \(HeaderStatus.size(entry.bytes))\(flags.isEmpty ? "" : "  (\(flags.joined(separator: ", ")))")")
        }
        return lines.joined(separator: "\n")
    }

    static func size(_ bytes: Int64) -> String {
        if bytes >= 1 << 20 { return "\(((bytes * 10) >> 20) / 10).\(((bytes * 10) >> 20) % 10) MiB" }
        if bytes >= 1 << 10 { return "\(bytes >> 10) KiB" }
        return "\(bytes) B"
    }

    static func gather(options: HeaderOptions) -> HeaderStatus {
        let key = KernelKey.running
        let release = key.release
        var sources: [Source] = []
        var chosen: Source?
        var reason = ""
        let cache = HeaderCache(root: options.cache, log: { _ in })
        let headersDir = options.cache.path + "/headers"
        let cachedRunning = FileSystem.isDirectory(headersDir) ? (try? cache.verifiedEntry(key.entryName)) ?? nil : nil

        func offer(_ source: Source, because why: String) {
            sources.append(source)
            if chosen == nil, source.available {
                chosen = source
                reason = why
            }
        }

        if let explicit = options.explicitSource {
            let exists = FileSystem.exists(explicit)
            offer(Source(kind: FileSystem.isDirectory(explicit) ? .directory : .archive, location: explicit,
                         available: exists, note: exists ? "given with --headers / KPROBE_RUN_HEADERS" : "does not exist"),
                  because: "given explicitly; no other source is considered")
            if !exists { reason = "\(explicit) does not exist" }
        } else {
            let sysfs = KheadersModule.archivePath
            offer(Source(kind: .kheaders, location: sysfs ?? KheadersModule.archivePaths[0], available: sysfs != nil,
                         note: sysfs == nil ? "absent" : (cachedRunning != nil ? "already unpacked in the cache" : "present")),
                  because: cachedRunning != nil ? "its unpacked copy in the cache is reused" : "the kernel provides its headers")
            let files = KheadersModule.moduleFiles(release: release)
            let modprobe = KheadersModule.modprobeUsable(release: release)
            let moduleLocation = files.first ?? (modprobe.map { "\($0) kheaders" } ?? "kheaders.ko")
            let moduleNote: String
            if cachedRunning != nil {
                moduleNote = "not needed: the cache holds this kernel's headers, so no module is loaded"
            } else if files.isEmpty, modprobe == nil {
                moduleNote = "no kheaders.ko under /lib/modules/\(release) or Android's module directories"
            } else {
                moduleNote = options.keepModule ? "would be loaded and kept loaded" : "would be loaded, read and unloaded"
            }
            offer(Source(kind: .kheaders, location: moduleLocation,
                         available: cachedRunning != nil || !files.isEmpty || modprobe != nil, note: moduleNote),
                  because: cachedRunning != nil ? "the cache holds this kernel's kheaders (\(cachedRunning!.path))" : "loading the kheaders module makes the kernel's headers available")
            var notes: [String] = []
            let modules = "/lib/modules/\(release)"
            let tree = KernelTree.locate(modules + "/build", sourceHint: modules + "/source", notes: &notes)
            offer(Source(kind: .build, location: modules + "/build", available: tree != nil,
                         note: tree.map { $0.source == $0.build ? $0.build : "\($0.build) + \($0.source)" } ?? notes.joined(separator: "; ")),
                  because: "an installed kernel header tree, used in place")
            let hasBTF = FileSystem.exists(VmlinuxHeader.systemBTF)
            offer(Source(kind: .btf, location: VmlinuxHeader.systemBTF, available: hasBTF && options.allowBTF,
                         note: !hasBTF ? "absent" : (options.allowBTF ? "types only: probes including kernel headers need a source above" : "not allowed")),
                  because: "kernel BTF gives vmlinux.h (types only; probes that include kernel headers such as linux/sched.h need one of the sources above)")
            if chosen == nil {
                reason = "no kernel headers or types: install linux-headers-\(release), use a kernel with CONFIG_IKHEADERS or CONFIG_DEBUG_INFO_BTF, or pass --headers"
            }
        }

        return HeaderStatus(release: release, machine: RunningKernel.machine, buildID: key.buildID,
                            cacheRoot: options.cache.path, sources: sources, chosen: chosen, reason: reason,
                            entries: entries(cache: options.cache, running: key),
                            moduleNote: ModuleRecord(headersDirectory: headersDir).statusLine)
    }

    private static func entries(cache: CacheRoot, running: KernelKey) -> [Entry] {
        var result: [Entry] = []
        let headers = cache.path + "/headers"
        if let directory = TreeOps.openDirectory(headers, in: AT_FDCWD) {
            let headersFD = directory.rawValue
            for name in TreeOps.list(headersFD).sorted() {
                let path = headers + "/" + name
                if name.hasPrefix(HeaderCache.temporaryPrefix) || name.hasPrefix(HeaderCache.discardedPrefix) {
                    result.append(Entry(kind: .leftover, path: path, bytes: 0, valid: false, ofRunningKernel: false))
                    continue
                }
                if name.hasPrefix(".") { continue }
                var manifest: Manifest?
                if let entry = TreeOps.openDirectory(name, in: headersFD) { manifest = Manifest.verified(entryFD: entry.rawValue) }
                let ofRunning = name == running.entryName
                    || (manifest?.key == .archive && HeaderCache.release(ofEntry: name) == running.release)
                result.append(Entry(kind: .headers, path: path, bytes: manifest?.totalBytes ?? 0,
                                    valid: manifest != nil, ofRunningKernel: ofRunning))
            }
        }
        let btf = cache.path + "/btf"
        if let directory = TreeOps.openDirectory(btf, in: AT_FDCWD) {
            let btfFD = directory.rawValue
            for name in TreeOps.list(btfFD).sorted() where !name.hasPrefix(".") {
                guard let entry = TreeOps.openDirectory(name, in: btfFD) else { continue }
                let entryFD = entry.rawValue
                var st = stat()
                let size = fstatat(entryFD, VmlinuxHeader.fileName, &st, AT_SYMLINK_NOFOLLOW) == 0 ? Int64(st.st_size) : 0
                result.append(Entry(kind: .btf, path: btf + "/" + name + "/" + VmlinuxHeader.fileName, bytes: size,
                                    valid: VmlinuxHeader.isComplete(in: entryFD), ofRunningKernel: name == running.entryName))
            }
        }
        return result
    }
}
