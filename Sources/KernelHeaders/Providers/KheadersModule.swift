import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The running kernel's kheaders archive: /sys/kernel/kheaders.tar.xz, appearing once the
/// kheaders module is loaded (built-in kernels always have it).
enum KheadersModule {
    static let archivePaths = ["/sys/kernel/kheaders.tar.xz", "/proc/kheaders.tar.xz"]
    static let moduleNames = ["kheaders.ko", "kheaders.ko.xz", "kheaders.ko.gz", "kheaders.ko.zst"]
    /// Where Android keeps modules; /lib/modules is empty there.
    static let androidDirectories = [
        "/vendor/lib/modules", "/system/lib/modules", "/system_dlkm/lib/modules",
        "/vendor_dlkm/lib/modules", "/odm/lib/modules",
    ]

    static var archivePath: String? { archivePaths.first(where: FileSystem.isRegularFile) }
    static var isLoaded: Bool { FileSystem.isDirectory("/sys/module/kheaders") }

    static func modprobe() -> String? {
        let path = Environment.get("PATH") ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/sbin", "/usr/sbin", "/bin", "/usr/bin"]
        return dirs.map { $0 + "/modprobe" }.first { access($0, X_OK) == 0 && FileSystem.isRegularFile($0) }
    }

    /// kheaders.ko (or compressed) for `release`. modules.dep names every module of the tree,
    /// so the tree is searched only where it has none; Android's directories are searched.
    static func moduleFiles(release: String) -> [String] {
        var found: [String] = []
        var seen: Set<String> = []
        func add(_ path: String) {
            guard let real = TreeOps.canonical(path), !seen.contains(real) else { return }
            seen.insert(real)
            found.append(path)
        }
        let modules = "/lib/modules/\(release)"
        if let listed = listedInModulesDep(modules) {
            listed.forEach(add)
        } else if FileSystem.isDirectory(modules) {
            search(modules, depth: 0, into: add)
        }
        for root in androidDirectories where FileSystem.isDirectory(root) {
            search(root, depth: 0, into: add)
        }
        return found
    }

    /// kheaders entries of `<dir>/modules.dep`, or nil if the file is missing.
    static func listedInModulesDep(_ dir: String) -> [String]? {
        guard let text = try? FileSystem.readString(dir + "/modules.dep") else { return nil }
        var result: [String] = []
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = line[..<colon]
            let base = path.split(separator: "/").last.map(String.init) ?? ""
            guard moduleNames.contains(base) else { continue }
            let full = path.hasPrefix("/") ? String(path) : dir + "/" + path
            if FileSystem.isRegularFile(full) { result.append(full) }
        }
        return result
    }

    /// Whether `modprobe kheaders` can work: a modprobe binary and a modules.dep naming kheaders.
    static func modprobeUsable(release: String) -> String? {
        guard let modprobe = modprobe() else { return nil }
        guard let listed = listedInModulesDep("/lib/modules/\(release)"), !listed.isEmpty else { return nil }
        return modprobe
    }

    /// Walks a module tree without following symlinks (build/ and source/ point at whole trees).
    private static func search(_ dir: String, depth: Int, into add: (String) -> Void) {
        guard depth < 8 else { return }
        guard let fd = try? FileDescriptor.open(dir, O_RDONLY | O_DIRECTORY) else { return }
        var st = stat()
        for name in TreeOps.list(fd.rawValue).sorted() where fstatat(fd.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFDIR: search(dir + "/" + name, depth: depth + 1, into: add)
            case S_IFREG where moduleNames.contains(name): add(dir + "/" + name)
            default: break
            }
        }
    }

    enum LoadOutcome {
        case loaded
        case alreadyLoaded
        case failed(String, permission: Bool)
    }

    /// Loads the module from `file`: finit_module for a plain .ko, init_module with the
    /// decompressed image for .ko.xz/.gz/.zst.
    static func load(_ file: String) -> LoadOutcome {
        func outcome(_ err: Errno) -> LoadOutcome {
            if err.rawValue == EEXIST { return .alreadyLoaded }
            return .failed("loading \(file): \(err)", permission: err.isPermission)
        }
        if file.hasSuffix(".ko") {
            let fd: FileDescriptor
            do {
                fd = try FileDescriptor.open(file, O_RDONLY)
            } catch {
                return outcome(error)
            }
            if kprobe_run_finit_module(fd.rawValue, "", 0) == 0 { return .loaded }
            guard errno == ENOSYS else { return outcome(Errno.current) }
        }
        let image: [UInt8]
        do {
            let mapped = try MappedFile(file)
            image = file.hasSuffix(".ko") ? Array(mapped.bytes) : try ArchiveInput.decompressModule(mapped.bytes, name: file)
        } catch {
            return .failed(error.message, permission: error.kind == .notPermitted)
        }
        let status = image.withUnsafeBytes { kprobe_run_init_module($0.baseAddress, UInt($0.count), "") }
        return status == 0 ? .loaded : outcome(Errno.current)
    }

    static func unload(log: @Sendable (String) -> Void) {
        if kprobe_run_delete_module("kheaders", O_NONBLOCK) == 0 {
            log("unloaded the kheaders module again")
        } else {
            log("could not unload the kheaders module (\(Errno.current)); it stays loaded (rmmod kheaders removes it)")
        }
    }

    /// Runs `modprobe kheaders`; returns its exit status and what it printed on stderr.
    static func runModprobe(_ path: String) -> (status: Int32, output: String) {
        do {
            let result = try ChildProcess.run(["modprobe", "kheaders"], path: path, stdout: .none, stderr: .head(4096))
            let text = String(decoding: result.stderr, as: UTF8.self).split(separator: "\n").joined(separator: "; ")
            return (result.status.code, text)
        } catch {
            return (-1, "cannot run \(path): \(error)")
        }
    }

    struct Fetched {
        var archive: ArchiveBytes
        var origin: String
    }

    /// Makes the archive appear (modprobe, else the module file), copies it, and unloads the
    /// module again if this call loaded it and `keep` is false. When the module cannot be loaded
    /// the archive is read out of the module file instead, which needs no privilege.
    static func fetch(release: String, keep: Bool, log: @Sendable (String) -> Void,
                      notes: inout [String], record: ModuleRecord? = nil) throws(HeaderError) -> Fetched? {
        // Recorded before loading: a run killed after the load leaves the record behind.
        let wasLoadedBefore = isLoaded
        if !wasLoadedBefore { record?.record() }
        defer { if !wasLoadedBefore, !isLoaded || keep { record?.clear() } }
        let wasLoaded = isLoaded
        var loadedByUs = false
        var permissionProblem: String?
        var files: [String] = []
        var how = ""
        if archivePath == nil {
            if let modprobe = modprobeUsable(release: release) {
                let result = runModprobe(modprobe)
                if result.status == 0, archivePath != nil {
                    loadedByUs = !wasLoaded
                    how = "loaded with modprobe"
                    log("loaded the kheaders module with \(modprobe)")
                } else {
                    let detail = result.output.isEmpty ? "" : ": \(result.output)"
                    notes.append("\(modprobe) kheaders failed (status \(result.status))\(detail)")
                    log("\(modprobe) kheaders failed (status \(result.status))\(detail)")
                }
            } else {
                notes.append(modprobe() == nil ? "no modprobe binary" : "modprobe skipped: /lib/modules/\(release)/modules.dep does not list kheaders")
            }
        }
        if archivePath == nil {
            files = moduleFiles(release: release)
            if files.isEmpty {
                notes.append("no kheaders.ko(.xz/.gz/.zst) under /lib/modules/\(release) or \(androidDirectories.joined(separator: ", "))")
            }
            for file in files {
                switch load(file) {
                case .loaded:
                    loadedByUs = true
                    how = "loaded from \(file)"
                    log("loaded the kheaders module from \(file)")
                case .alreadyLoaded:
                    break
                case .failed(let why, let permission):
                    notes.append(why)
                    log(why)
                    if permission { permissionProblem = why }
                    continue
                }
                break
            }
        }
        if let path = archivePath {
            let bytes: [UInt8]
            do {
                bytes = try FileSystem.read(path, limit: InputLimit.archive)
            } catch {
                if loadedByUs, !keep { unload(log: log) }
                throw HeaderError.unreadable(path, error)
            }
            var origin = path
            if loadedByUs {
                if keep {
                    origin += " (kheaders module \(how) by kprobe-run, kept loaded: --keep-module)"
                } else {
                    unload(log: log)
                    origin += " (kheaders module \(how) by kprobe-run and unloaded again)"
                }
            }
            return Fetched(archive: ArchiveBytes(bytes: bytes, name: path), origin: origin)
        }
        for file in files {
            guard case .archive(let archive, _)? = try? ArchiveInput.load(file) else { continue }
            log("read the kheaders archive out of \(file) without loading it")
            return Fetched(archive: archive, origin: "\(file) (archive read from the module file; the module could not be loaded)")
        }
        if let permissionProblem {
            throw HeaderError("cannot load the kheaders module: \(permissionProblem); run as root (CAP_SYS_MODULE), or pass --headers with a header tree or archive", kind: .notPermitted)
        }
        return nil
    }
}
