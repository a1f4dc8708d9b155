import CLibBPF
import KprobeSupport
import ProbeCompiler

/// `kprobe-run --version`: this build and the libraries it runs with, for bug reports.
struct VersionReport {
    var version: String
    var build: String
    var libbpf: String
    /// The compiler worker's clang/LLVM, nil where there is none (the static device binary).
    var compiler: String?

    static func current() -> VersionReport {
        #if KPROBE_RUN_STATIC
        let build = "static release (runs compiled objects; no compiler)"
        #elseif DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        let worker = WorkerCompiler()
        return VersionReport(
            version: KprobeRunVersion.string, build: build,
            libbpf: String(cString: libbpf_version_string()),
            compiler: worker.compilerVersion().map { "\($0) (\(worker.workerPath))" })
    }

    var text: String {
        """
        kprobe-run \(version)
        build: \(build)
        libbpf: \(libbpf)
        compiler: \(compiler ?? "none found (kprobe-run-cc is not installed beside kprobe-run or in ../libexec/kprobe-run)")
        """
    }
}
