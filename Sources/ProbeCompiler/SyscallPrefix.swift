
#if canImport(Glibc)
import Glibc
#endif

/// The prefix the kernel gives system call entry points (`__x64_sys_openat`), which BCC's
/// `kprobe__sys_NAME` convention leaves out.
public enum SyscallPrefix {
    static let known = ["__x64_sys_", "__arm64_sys_", "__s390x_sys_", "__riscv_sys_", "__powerpc_sys_", "__loongarch_sys_"]

    /// The running kernel's prefix, from the first system call symbol in /proc/kallsyms; "" for a
    /// kernel without syscall wrappers (before 4.17 on x86-64) or when kallsyms cannot be read.
    ///
    /// Reads only up to that symbol: the kernel formats kallsyms as it is read, and the whole
    /// file (megabytes) costs about 0.2 s, while the first syscall symbol comes early.
    public static func running() -> String {
        let fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return "" }
            pending += chunk[0..<count]
            guard let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) else { continue }
            for line in pending[..<lastNewline].split(separator: UInt8(ascii: "\n")) {
                // "ffffffff81001000 T __x64_sys_read": the symbol is the third field.
                guard let symbol = line.split(separator: UInt8(ascii: " ")).dropFirst(2).first else { continue }
                if let prefix = known.first(where: { symbol.starts(with: $0.utf8) }) { return prefix }
            }
            pending.removeSubrange(...lastNewline)
        }
    }

    /// The usual prefix for kernels of the architecture in `triple` (such as "aarch64-linux-gnu"),
    /// for compiling for a kernel other than the running one.
    public static func typical(forTriple triple: String) -> String {
        switch triple.split(separator: "-").first.map(String.init) ?? "" {
        case "x86_64": "__x64_sys_"
        case "aarch64", "arm64": "__arm64_sys_"
        case "s390x": "__s390x_sys_"
        case "riscv64": "__riscv_sys_"
        default: ""
        }
    }
}
