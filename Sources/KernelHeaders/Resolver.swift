import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// One resolve: tries the sources in order and remembers what it tried for the error message.
struct Resolver {
    let options: HeaderOptions
    let limits: ExtractionLimits
    private(set) var tried: [String] = []

    init(options: HeaderOptions, limits: ExtractionLimits) {
        self.options = options
        self.limits = limits
    }

    private var cache: HeaderCache { HeaderCache(root: options.cache, log: options.log) }

    private var progress: ExtractionProgress? {
        guard options.showProgress else { return nil }
        return { files, bytes in Progress.line("kprobe-run: unpacking kernel headers: \(files) files, \(bytes >> 20) MiB") }
    }

    mutating func resolve() throws(HeaderError) -> HeaderSet {
        if let explicit = options.explicitSource { return try resolveExplicit(explicit) }
        let log = options.log
        let key = KernelKey.running
        let release = key.release

        cache.unloadModuleLeftBehind()
        if options.preferBTF, options.allowBTF, FileSystem.exists(VmlinuxHeader.systemBTF) {
            log("the probe includes vmlinux.h, which only kernel BTF gives: using vmlinux.h generated from \(VmlinuxHeader.systemBTF) before any header tree")
            do throws(HeaderError) {
                return try btfSet(from: VmlinuxHeader.systemBTF, entry: key.entryName, kind: .btf,
                                  origin: "vmlinux.h generated from \(VmlinuxHeader.systemBTF) (\(key.description))")
            } catch {
                tried.append("BTF: \(error.message)")
            }
        }
        if let entry = try cache.verifiedEntry(key.entryName) {
            log("using the cached kheaders of the running kernel (\(key.description)): \(entry.path)")
            return try headerSet(entry, kind: .kheaders,
                                 origin: "kheaders of the running kernel (\(key.description)), cached in \(entry.path)")
        }

        var permissionProblem: HeaderError?
        let sysfs = KheadersModule.archivePath
        let moduleFiles = sysfs == nil ? KheadersModule.moduleFiles(release: release) : []
        let modprobe = sysfs == nil ? KheadersModule.modprobeUsable(release: release) : nil
        if sysfs != nil || modprobe != nil || !moduleFiles.isEmpty {
            var origin: String?
            var notes: [String] = []
            do throws(HeaderError) {
                let keep = options.keepModule
                defer { if options.showProgress { Progress.clear() } }
                let (entry, pending) = try cache.kernelEntry(key, limits: limits, progress: progress,
                                                             inBackground: options.unpackInBackground) { () throws(HeaderError) -> ArchiveBytes in
                    if let path = KheadersModule.archivePath {
                        origin = path
                        do throws(Errno) {
                            return ArchiveBytes(bytes: try FileSystem.read(path, limit: InputLimit.archive), name: path)
                        } catch {
                            throw HeaderError.unreadable(path, error)
                        }
                    }
                    let record = ModuleRecord(headersDirectory: try cache.headersDirectory())
                    guard let fetched = try KheadersModule.fetch(release: release, keep: keep, log: log, notes: &notes, record: record) else {
                        throw HeaderError("the kheaders module could not be loaded or read")
                    }
                    origin = fetched.origin
                    return fetched.archive
                }
                return try headerSet(entry, kind: .kheaders, origin: origin ?? "kheaders of the running kernel, cached in \(entry.path)",
                                     pending: pending)
            } catch {
                tried += notes.map { "kheaders module: \($0)" }
                if error.kind == .notPermitted { permissionProblem = error }
                if origin != nil { throw error }
                tried.append("kheaders: \(error.message)")
            }
        } else {
            tried.append("/sys/kernel/kheaders.tar.xz: absent (kernel without CONFIG_IKHEADERS, or the kheaders module is not loaded)")
            tried.append("kheaders module: no kheaders.ko under /lib/modules/\(release) or Android's module directories")
        }

        var notes: [String] = []
        let modules = "/lib/modules/\(release)"
        if let tree = KernelTree.locate(modules + "/build", sourceHint: modules + "/source", notes: &notes) {
            log("using the kernel build tree \(tree.build)\(tree.source == tree.build ? "" : " (sources in \(tree.source))")")
            return try inPlace(tree, kind: .build, origin: "\(modules)/build → \(tree.build)\(tree.source == tree.build ? "" : " + \(tree.source)")")
        }
        tried += notes.map { "build tree: \($0)" }

        if options.allowBTF {
            if FileSystem.exists(VmlinuxHeader.systemBTF) {
                log("no kernel header tree found; using vmlinux.h generated from \(VmlinuxHeader.systemBTF). Probes that include kernel headers (linux/sched.h, net/sock.h, …) need kheaders (CONFIG_IKHEADERS), \(modules)/build (linux-headers-\(release)) or --headers")
                do throws(HeaderError) {
                    return try btfSet(from: VmlinuxHeader.systemBTF, entry: key.entryName, kind: .btf,
                                      origin: "vmlinux.h generated from \(VmlinuxHeader.systemBTF) (\(key.description))")
                } catch {
                    if error.kind == .notPermitted { permissionProblem = error }
                    tried.append("BTF: \(error.message)")
                }
            } else {
                tried.append("\(VmlinuxHeader.systemBTF): absent (kernel without CONFIG_DEBUG_INFO_BTF)")
            }
        }

        if let permissionProblem { throw permissionProblem }
        throw HeaderError("""
        no kernel headers or types found for \(release). Tried:
        \(tried.map { "  - " + $0 }.joined(separator: "\n"))
        To fix: install the headers package (Debian/Ubuntu: apt install linux-headers-\(release)), or use a kernel \
        with CONFIG_IKHEADERS (/sys/kernel/kheaders.tar.xz or kheaders.ko) or CONFIG_DEBUG_INFO_BTF, or point --headers \
        (or KPROBE_RUN_HEADERS) at a header tree, a kheaders.tar.xz, a kheaders.ko or a vmlinux
        """)
    }

    private mutating func resolveExplicit(_ path: String) throws(HeaderError) -> HeaderSet {
        let log = options.log
        guard FileSystem.exists(path) else {
            throw HeaderError("--headers \(path): no such file or directory; give a kernel header tree, a kheaders.tar.xz, a kheaders.ko or a vmlinux")
        }
        let absolute = TreeOps.canonical(path) ?? path
        if FileSystem.isDirectory(absolute) {
            var notes: [String] = []
            if let tree = KernelTree.locate(absolute, notes: &notes) {
                log("using the header tree \(tree.build)\(tree.source == tree.build ? "" : " (sources in \(tree.source))")")
                return try inPlace(tree, kind: .directory, origin: path)
            }
            if FileSystem.isRegularFile(absolute + "/" + VmlinuxHeader.fileName) {
                let arch = try runningArch()
                var hasher = SHA256()
                hasher.update(absolute)
                var st = stat()
                if stat(absolute + "/" + VmlinuxHeader.fileName, &st) == 0 {
                    hasher.update("\u{0}\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ino)")
                }
                return HeaderSet(kind: .directory, root: absolute, arch: arch,
                                 identity: "vmlinux.h-\(String(hasher.hexDigest().prefix(12)))",
                                 origin: "\(path)/\(VmlinuxHeader.fileName)", frontendTriple: "bpf",
                                 compileArguments: KernelFlags.btfArguments(directory: absolute, arch: arch))
            }
            throw HeaderError("--headers \(path) is not a kernel header tree (\(notes.joined(separator: "; "))) and holds no vmlinux.h; give a configured kernel tree (include/generated/autoconf.h and include/linux/kconfig.h), an unpacked kheaders archive, or a file")
        }
        if let (digest, kind) = cache.rememberedDigest(of: absolute), let entry = try cache.entry(forDigest: digest) {
            log("using \(entry.path), unpacked earlier from \(path)")
            return try headerSet(entry, kind: kind, origin: path)
        }
        switch try ArchiveInput.load(absolute) {
        case .archive(let archive, let kind):
            defer { if options.showProgress { Progress.clear() } }
            let (entry, pending) = try cache.archiveEntry(archive, limits: limits, progress: progress,
                                                          inBackground: options.unpackInBackground)
            cache.remember(digest: entry.manifest.archiveDigest, kind: kind, of: absolute)
            return try headerSet(entry, kind: kind, origin: path, pending: pending)
        case .btf(let btfPath, let kind):
            var st = stat()
            stat(btfPath, &st)
            let digest = SHA256.hex("\(btfPath)\u{0}\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ino)")
            log("\(path) has BTF but no kheaders archive; using vmlinux.h generated from it")
            return try btfSet(from: btfPath, entry: "file-\(digest.prefix(12))", kind: kind,
                              origin: "vmlinux.h generated from the BTF of \(path)")
        }
    }

    private func runningArch() throws(HeaderError) -> KernelArch {
        if let arch = options.arch { return arch }
        let machine = RunningKernel.machine
        guard let arch = KernelArch(machine: machine) else {
            throw HeaderError("unknown machine '\(machine)': no BPF target architecture for it; name the architecture explicitly")
        }
        return arch
    }

    private func headerSet(_ entry: CacheEntry, kind: HeaderSourceKind, origin: String,
                           pending: PendingHeaders? = nil) throws(HeaderError) -> HeaderSet {
        let arch: KernelArch
        do {
            arch = try KernelFlags.architecture(ofTree: entry.path, override: options.arch, description: origin,
                                                isDirectory: pending.map { pending in { pending.isDirectory($0) } })
        } catch {
            pending?.wait()
            throw error
        }
        let arguments = KernelFlags.arguments(source: entry.path, build: entry.path, arch: arch,
                                              asmWorkarounds: entry.path + "/" + KernelFlags.asmWorkaroundsPath)
        var set = HeaderSet(kind: kind, root: entry.path, arch: arch, identity: entry.name, origin: origin,
                            frontendTriple: arch.frontendTriple, compileArguments: arguments)
        set.pending = pending
        return set
    }

    private func inPlace(_ tree: KernelTree, kind: HeaderSourceKind, origin: String) throws(HeaderError) -> HeaderSet {
        let arch = try KernelFlags.architecture(ofTree: tree.source, override: options.arch, description: origin)
        let workarounds = try cache.supportFile()
        return HeaderSet(kind: kind, root: tree.build, arch: arch, identity: tree.identity, origin: origin,
                         frontendTriple: arch.frontendTriple,
                         compileArguments: KernelFlags.arguments(source: tree.source, build: tree.build, arch: arch,
                                                                 asmWorkarounds: workarounds))
    }

    private func btfSet(from btfPath: String, entry: String, kind: HeaderSourceKind, origin: String) throws(HeaderError) -> HeaderSet {
        let arch = try runningArch()
        let (directory, _) = try VmlinuxHeader.cached(cache: options.cache, entry: entry, btfPath: btfPath,
                                                      showProgress: options.showProgress, log: options.log)
        return HeaderSet(kind: kind, root: directory, arch: arch, identity: "btf-\(entry)", origin: origin,
                         frontendTriple: "bpf", compileArguments: KernelFlags.btfArguments(directory: directory, arch: arch))
    }
}
