
import KprobeSupport

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
        var found = ""
        Kallsyms.scan { symbol in
            found = known.first { symbol.name.starts(with: $0.utf8) } ?? ""
            return found.isEmpty
        }
        return found
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
