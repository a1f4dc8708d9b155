import KernelHeaders
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// One Android device reached over adb, with the static kprobe-run installed on it: the host
/// compiles, the device loads and attaches.
public struct DeviceTarget: Sendable {
    /// Writable and executable on every Android device, and the device side's own cache root.
    public static let directory = "/data/local/tmp/kprobe-run"
    public static let binaryPath = directory + "/kprobe-run"
    static let stampPath = directory + "/kprobe-run.stamp"
    static let headersLogPath = directory + "/headers.log"

    public let adb: Adb
    public let info: DeviceInfo
    public let arch: KernelArch
    let log: @Sendable (String) -> Void

    /// Picks the device, and installs the static kprobe-run for its architecture when it is
    /// missing there or differs from the one on this host.
    public static func prepare(serial: String?, log: @escaping @Sendable (String) -> Void) throws(RemoteError) -> DeviceTarget {
        let adb = try Adb.connect(serial: serial)
        let started = MonotonicClock.now
        let probe = try adb.shell("""
            echo "machine=$(uname -m)"; echo "stamp=$(cat \(stampPath) 2>/dev/null)"; \
            [ -x \(binaryPath) ] && \(binaryPath) device info
            """)
        let text = String(decoding: probe.output, as: UTF8.self)
        let fields = Self.fields(text)
        guard let machine = fields["machine"], !machine.isEmpty else {
            throw RemoteError(.internal, "cannot query device \(adb.serial ?? ""): `adb shell uname -m` printed nothing (status \(probe.status))\(probe.errors.isEmpty ? "" : ": " + probe.errors.trimmingSpaces)")
        }
        guard let arch = KernelArch(machine: machine) else {
            throw RemoteError(.usage, "device \(adb.serial ?? "") is a '\(machine)' machine, for which kprobe-run has no BPF target")
        }
        let binary = try DeviceBinary.locate(for: arch)
        let info: DeviceInfo
        if let current = DeviceInfo(parsing: text), fields["stamp"] == binary.stamp, current.version == KprobeRunVersion.string {
            info = current
            log("device \(adb.serial ?? ""): \(binaryPath) is current (\(MonotonicClock.milliseconds(since: started)) ms to check)")
        } else {
            info = try install(binary, on: adb, log: log)
        }
        log("device \(adb.serial ?? ""): \(info.summary)")
        return DeviceTarget(adb: adb, info: info, arch: arch, log: log)
    }

    private static func install(_ binary: DeviceBinary, on adb: Adb, log: @Sendable (String) -> Void) throws(RemoteError) -> DeviceInfo {
        let started = MonotonicClock.now
        let staging = "\(directory)/.kprobe-run.\(getpid())"
        let mkdir = try adb.shell("mkdir -p \(directory) && chmod 700 \(directory)")
        guard mkdir.status == 0 else {
            throw RemoteError(.internal, "cannot create \(directory) on the device: \(mkdir.errors.trimmingSpaces)")
        }
        try adb.push(binary.path, to: staging)
        let installed = try adb.shell("""
            chmod 700 \(staging) && mv -f \(staging) \(binaryPath) && echo \(quote(binary.stamp)) > \(stampPath) && \(binaryPath) device info
            """)
        let text = String(decoding: installed.output, as: UTF8.self)
        guard installed.status == 0, let info = DeviceInfo(parsing: text) else {
            let said = (text + installed.errors).trimmingSpaces
            var hint = ""
            if said.contains("not found") || said.contains("No such file") {
                hint = "; the device cannot start it: is \(binary.path) a static build (`make static`) for \(DeviceBinary.elfMachineName(KernelArch(machine: RunningKernel.machine) ?? .x86))?"
            }
            if said.contains("/proc") {
                hint = "; the Swift runtime needs /proc, which every adb shell has: is /proc mounted on the device?"
            }
            throw RemoteError(.internal, "installed \(binary.path) as \(binaryPath) on the device, but it does not run there (status \(installed.status))\(said.isEmpty ? "" : ": " + said)\(hint)")
        }
        var st = stat()
        let size = stat(binary.path, &st) == 0 ? Int(st.st_size) : 0
        log("installed \(binary.path) (\(size >> 20) MiB) on the device as \(binaryPath) in \(MonotonicClock.milliseconds(since: started)) ms")
        return info
    }

    /// The device kernel's kheaders archive, kept in the host's cache under
    /// `devices/<release>-<digest>/kheaders.tar.xz`: fetched over adb the first time, when the
    /// device side loads the kheaders module (and unloads it again) to stream it back.
    public func headerArchive(cache: CacheRoot, keepModule: Bool) throws(RemoteError) -> String {
        let directory: String
        do {
            directory = try cache.directory("devices", info.kernelKey)
        } catch {
            throw RemoteError(error.kind, error.message)
        }
        let archive = directory + "/kheaders.tar.xz"
        if FileSystem.isRegularFile(archive) {
            log("using the device kernel's headers cached in \(archive) (nothing fetched)")
            return archive
        }
        let started = MonotonicClock.now
        let temporary = "\(directory)/.fetch-\(getpid())"
        let command = "\(Self.binaryPath) device headers -v\(keepModule ? " --keep-module" : "") 2>\(Self.headersLogPath)"
        let status: Int32
        do throws(RemoteError) {
            let file: FileDescriptor
            do {
                file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
            } catch {
                throw RemoteError(.internal, "cannot create \(temporary): \(error)")
            }
            status = try adb.execOut(command, into: file.rawValue)
        } catch {
            unlink(temporary)
            throw error
        }
        let said = (try? adb.shell("cat \(Self.headersLogPath); rm -f \(Self.headersLogPath)"))
            .map { String(decoding: $0.output, as: UTF8.self) } ?? ""
        let lines = said.split(whereSeparator: \.isNewline).map { $0.hasPrefix("kprobe-run: ") ? String($0.dropFirst("kprobe-run: ".count)) : String($0) }
        for line in lines { log("device: \(line)") }
        var st = stat()
        let size = stat(temporary, &st) == 0 ? Int(st.st_size) : 0
        guard status == 0, size > 6, Self.startsWithXZ(temporary) else {
            unlink(temporary)
            let detail = lines.isEmpty ? "" : ":\n" + lines.map { "  " + $0 }.joined(separator: "\n")
            throw RemoteError(status == FailureKind.notPermitted.exitCode ? .notPermitted : .noKernelHeaders,
                              "could not fetch the kernel headers of the device (\(info.summary); status \(status))\(detail)\nTo fix: use a device kernel with CONFIG_IKHEADERS (kheaders.ko in /vendor/lib/modules or /system/lib/modules), or compile with --headers pointing at that kernel's headers")
        }
        do {
            try AtomicFile.commit(temporary, to: archive, relativeTo: AT_FDCWD)
        } catch {
            unlink(temporary)
            throw RemoteError(.internal, "cannot move the fetched headers to \(archive): \(error)")
        }
        log("fetched the device kernel's headers (\(size / 1024) KiB) into \(archive) in \(MonotonicClock.milliseconds(since: started)) ms")
        return archive
    }

    private static func startsWithXZ(_ path: String) -> Bool {
        guard let file = try? FileDescriptor.open(path, O_RDONLY) else { return false }
        var head = [UInt8](repeating: 0, count: 6)
        return head.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, 6, 0) } == 6 && head == [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]
    }

    /// Pushes `object` and runs it on the device with `arguments` (options of `kprobe-run run`),
    /// its output streamed back as it comes; returns the exit status for the host.
    public func run(object: [UInt8], name: String, arguments: [String], stagingCache: CacheRoot) throws(RemoteError) -> Int32 {
        let safeName = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        let remoteObject = "\(Self.directory)/\(safeName).o"
        let pidFile = "\(Self.directory)/\(safeName).pid"
        let local: String
        do {
            local = try stagingCache.directory("devices", info.kernelKey) + "/.push-\(getpid())-\(safeName).o"
            try FileSystem.writeAtomically(object, to: local, mode: 0o600)
        } catch let error as Failure {
            throw RemoteError(error.kind, error.message)
        } catch {
            throw RemoteError(.internal, "cannot stage the object for adb push: \(error)")
        }
        defer { unlink(local) }
        let started = MonotonicClock.now
        try adb.push(local, to: remoteObject)
        log("pushed \(object.count) bytes of BPF object to \(remoteObject) in \(MonotonicClock.milliseconds(since: started)) ms")
        // exec keeps the shell's pid, so the pid file names kprobe-run itself and adb's status is its status.
        let command = "echo $$ > \(pidFile); exec " + ([Self.binaryPath, "run", remoteObject] + arguments).map(quote).joined(separator: " ")
        log("running on the device: \(command)")
        let (status, stoppedBy) = try adb.stream(command)
        guard let stoppedBy else { return status }
        stopLeftover(pidFile: pidFile)
        // Stopped on request: the device side detached; adb reports the stop as 128+signal.
        log("stopped by signal \(stoppedBy); the device side detached (adb status \(status))")
        return status > 128 ? 0 : status
    }

    /// Where adb does not pass the stop on (some adb versions only close the connection), the
    /// device-side run is stopped by its pid, after checking the pid is still kprobe-run.
    private func stopLeftover(pidFile: String) {
        let script = """
            p=$(cat \(pidFile) 2>/dev/null); rm -f \(pidFile); \
            if [ -n "$p" ] && [ "$(readlink /proc/$p/exe 2>/dev/null)" = \(Self.binaryPath) ]; then \
            kill -TERM $p; i=0; while [ -d /proc/$p ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; echo stopped; fi
            """
        if let result = try? adb.shell(script), String(decoding: result.output, as: UTF8.self).contains("stopped") {
            log("the device-side run outlived adb; stopped it")
        }
    }

    static func fields(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let eq = line.firstIndex(of: "="), !line.contains(" ") else { continue }
            result[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return result
    }
}

/// One argument for the device's /system/bin/sh.
func quote(_ argument: String) -> String {
    if !argument.isEmpty, argument.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+".contains($0) }) {
        return argument
    }
    return "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}

