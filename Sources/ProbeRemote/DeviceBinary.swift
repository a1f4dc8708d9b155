import KernelHeaders
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The static kprobe-run that runs on the device (`make static` builds it for this machine's
/// architecture): a phone has no glibc, so only a fully static executable starts there.
public struct DeviceBinary: Sendable {
    public var path: String
    /// Changes whenever the file does: the device keeps it next to its copy to tell whether that
    /// copy is current.
    public var stamp: String

    /// The file name `make static` gives it: `kprobe-run-static-<uname -m of the target>`.
    public static func fileName(for arch: KernelArch) -> String {
        "kprobe-run-static-\(elfMachineName(arch))"
    }

    /// Finds a static build for `arch`: $KPROBE_RUN_DEVICE_BINARY, then next to this executable,
    /// then `../static/` or `../../static/` from it (where `make static` puts it), then this executable itself if it
    /// is static and of that architecture.
    public static func locate(for arch: KernelArch, environment: [String: String] = Environment.current) throws(RemoteError) -> DeviceBinary {
        if let explicit = environment["KPROBE_RUN_DEVICE_BINARY"], !explicit.isEmpty {
            switch check(explicit, arch: arch) {
            case .ok(let binary): return binary
            case .problem(let why): throw RemoteError(.usage, "KPROBE_RUN_DEVICE_BINARY=\(explicit): \(why)")
            }
        }
        var candidates: [String] = []
        if let directory = FileSystem.executableDirectory() {
            candidates.append(directory + "/" + fileName(for: arch))
            candidates.append(directory + "/../static/" + fileName(for: arch))
            // /proc/self/exe resolves SwiftPM's .build/debug symlink to .build/<triple>/debug.
            candidates.append(directory + "/../../static/" + fileName(for: arch))
            candidates.append(directory + "/kprobe-run")
        }
        var problems: [String] = []
        for candidate in candidates where FileSystem.isRegularFile(candidate) {
            switch check(candidate, arch: arch) {
            case .ok(let binary): return binary
            case .problem(let why): problems.append("\(candidate): \(why)")
            }
        }
        let host = KernelArch(machine: RunningKernel.machine)
        let howTo = host == arch
            ? "build it with `make static` (it lands in .build/static/\(fileName(for: arch)))"
            : [.arm64, .x86].contains(arch)
            ? "cross-build it with `make static ARCH=\(elfMachineName(arch))` (it lands in .build/static/\(fileName(for: arch)); it needs a Swift SDK for static \(elfMachineName(arch)) executables, see README, \"The device-side binary\")"
            : "this machine is \(RunningKernel.machine), so `make static` cannot build it here: run `make static` on an \(elfMachineName(arch)) Linux machine (or a \(elfMachineName(arch)) container) and copy .build/static/\(fileName(for: arch)) next to this kprobe-run"
        throw RemoteError(.usage, """
            no static kprobe-run for the device's architecture (\(elfMachineName(arch))): a phone has no glibc, so the device side must be a fully static executable; \(howTo), or set KPROBE_RUN_DEVICE_BINARY to one\
            \(problems.isEmpty ? "" : " (looked at: " + problems.joined(separator: "; ") + ")")
            """)
    }

    enum Check {
        case ok(DeviceBinary)
        case problem(String)
    }

    /// A static ELF executable (no PT_INTERP) for `arch`.
    static func check(_ path: String, arch: KernelArch) -> Check {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return .problem("no such file") }
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path, O_RDONLY)
        } catch {
            return .problem("cannot open it: \(error)")
        }
        let fd = file.rawValue
        var header = [UInt8](repeating: 0, count: 64)
        guard header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 64, 0) }) == 64,
              header.starts(with: [0x7f, 0x45, 0x4c, 0x46]), header[4] == 2, header[5] == 1 else {
            return .problem("not a 64-bit little-endian ELF file")
        }
        func half(_ at: Int) -> Int { Int(header[at]) | Int(header[at + 1]) << 8 }
        func quad(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(header[at + $1]) << (8 * $1) } }
        let machine = half(18)
        guard machine == elfMachine(arch) else {
            return .problem("built for ELF machine \(machine), not for \(elfMachineName(arch))")
        }
        let phoff = quad(32), phentsize = half(54), phnum = half(56)
        var programHeaders = [UInt8](repeating: 0, count: phentsize * phnum)
        guard programHeaders.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, off_t(phoff)) }) == programHeaders.count else {
            return .problem("truncated ELF file")
        }
        for index in 0..<phnum {
            let at = index * phentsize
            let type = UInt32(programHeaders[at]) | UInt32(programHeaders[at + 1]) << 8 | UInt32(programHeaders[at + 2]) << 16 | UInt32(programHeaders[at + 3]) << 24
            if type == 3 {
                return .problem("dynamically linked (it needs a dynamic loader and glibc, which a phone lacks); build it with `make static`")
            }
        }
        let stamp = "\(KprobeRunVersion.string)-\(st.st_size)-\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        return .ok(DeviceBinary(path: path, stamp: stamp))
    }

    static func elfMachine(_ arch: KernelArch) -> Int {
        switch arch {
        case .x86: 62
        case .arm64: 183
        case .arm: 40
        case .riscv: 243
        case .powerpc: 21
        case .s390: 22
        case .mips: 8
        case .loongarch: 258
        }
    }

    static func elfMachineName(_ arch: KernelArch) -> String {
        switch arch {
        case .x86: "x86_64"
        case .arm64: "aarch64"
        case .arm: "arm"
        case .riscv: "riscv64"
        case .powerpc: "ppc64le"
        case .s390: "s390x"
        case .mips: "mips64el"
        case .loongarch: "loongarch64"
        }
    }
}
