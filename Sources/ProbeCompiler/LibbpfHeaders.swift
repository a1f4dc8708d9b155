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
                files.append(VirtualFile(path: virtualDirectory + "/bpf/" + name, contents: installed + (LibbpfHeaderAdditions.byHeader[name] ?? "")))
            } catch {
                throw CompileError("cannot read \(path): \(error)")
            }
        }
        return (files, "-I" + virtualDirectory)
    }
}
