import KprobeSupport

/// libbpf's BPF-side headers, served from a private virtual directory: with real kernel
/// headers the probe is compiled with -nostdinc, and adding all of /usr/include to reach
/// <bpf/bpf_helpers.h> would let user-space headers shadow the kernel's.
public enum LibbpfHeaders {
    /// Where the headers appear to the compiler; nothing is written there.
    public static let virtualDirectory = "/kprobe-run-virtual/libbpf/include"

    static let required = ["bpf_helpers.h", "bpf_helper_defs.h"]
    static let optional = ["bpf_tracing.h", "bpf_core_read.h", "bpf_endian.h", "usdt.bpf.h"]

    /// The headers as virtual files under `virtualDirectory`/bpf, and the "-I" argument for them.
    public static func load(from directory: String = "/usr/include/bpf") throws(CompileError) -> (virtualFiles: [VirtualFile], includeArgument: String) {
        var files: [VirtualFile] = []
        for name in required + optional {
            let path = directory + "/" + name
            guard FileSystem.exists(path) else {
                if required.contains(name) {
                    throw CompileError("libbpf's BPF headers are missing (\(path) not found); install libbpf-dev (Debian/Ubuntu) or libbpf-devel")
                }
                continue
            }
            do {
                let installed = try FileSystem.readString(path)
                let contents = name == "usdt.bpf.h" ? usdtErrnoFallback(installed) : installed
                files.append(VirtualFile(path: virtualDirectory + "/bpf/" + name,
                                         contents: contents + (LibbpfHeaderAdditions.byHeader[name] ?? "")))
            } catch {
                throw CompileError("cannot read \(path): \(error)")
            }
        }
        return (files, "-I" + virtualDirectory)
    }

    /// usdt.bpf.h includes <linux/errno.h>, whose <asm/errno.h> is in the kernel's headers but,
    /// for a vmlinux.h probe, only in the host's multiarch directory, which the BPF target does
    /// not search; <asm-generic/errno.h> (what every architecture's asm/errno.h builds on) is.
    static func usdtErrnoFallback(_ header: String) -> String {
        header.replacing("#include <linux/errno.h>\n", with: """
            #if __has_include(<asm/errno.h>)
            #include <linux/errno.h>
            #else
            #include <asm-generic/errno.h>
            #endif

            """)
    }
}
