import KprobeSupport
import ProbeCompiler
import TestSupport
@testable import BCCRewriter
#if canImport(Glibc)
import Glibc
#endif

/// Kernel headers for parsing: the test kernel's kheaders archive, unpacked once per run.
enum Fixtures {
    static let archive = TestInputs.testKernelArchive
    static let corpus = TestInputs.bccCorpus
    static let libbpfDirectory = "/kprobe-run-test/libbpf/include"

    /// Kept for the whole test run (a static is never destroyed), removed by nobody else.
    private static let unpacked = try? ScratchDirectory("bcc-rewriter-headers")

    static let headers: String? = {
        guard FileSystem.isRegularFile(archive), let directory = unpacked else { return nil }
        guard system("tar -xJf '\(archive)' -C '\(directory.path)'") == 0 else { return nil }
        return directory.path
    }()

    static var available: Bool { headers != nil }

    static func arguments(_ root: String) -> [String] {
        [
            "-nostdinc", "-isystem", "/usr/lib/llvm-14/lib/clang/14.0.6/include",
            "-I\(root)/arch/x86/include", "-I\(root)/arch/x86/include/generated", "-I\(root)/include",
            "-I\(root)/arch/x86/include/uapi", "-I\(root)/arch/x86/include/generated/uapi",
            "-I\(root)/include/uapi", "-I\(root)/include/generated/uapi",
            "-include", "\(root)/include/linux/kconfig.h", "-D__KERNEL__", "-D__BPF_TRACING__", "-D__TARGET_ARCH_x86",
            "-Wno-unused-value", "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types",
            "-Wno-gnu-variable-sized-type-not-at-end", "-Wno-address-of-packed-member",
            "-Wno-tautological-compare", "-Wno-unknown-warning-option", "-I\(libbpfDirectory)",
        ]
    }

    static let libbpfFiles: [VirtualFile] = ["bpf_helpers.h", "bpf_helper_defs.h", "bpf_tracing.h", "bpf_core_read.h", "bpf_endian.h"].compactMap { name in
        guard let text = try? FileSystem.readString("/usr/include/bpf/" + name) else { return nil }
        return VirtualFile(path: "\(libbpfDirectory)/bpf/\(name)", contents: text)
    }

    static func rewrite(_ source: String, path: String = "probe.c", files: [VirtualFile] = [], syscallPrefix: String = "__x64_sys_") throws -> BCCRewrite {
        try BCCFrontend.rewrite(source: source, path: path, triple: "x86_64-linux-gnu", arguments: arguments(headers!),
                                virtualFiles: libbpfFiles + files, syscallPrefix: syscallPrefix)
    }

    /// Parses rewritten output as the compile would see it; returns clang's errors or nil.
    static func errors(ofRewritten rewrite: BCCRewrite, path: String = "probe.c", files: [VirtualFile] = []) throws -> String? {
        let unit = try ParsedUnit(source: rewrite.source, path: path, triple: "x86_64-linux-gnu",
                                  arguments: arguments(headers!) + rewrite.arguments,
                                  files: BCCPrelude.files + libbpfFiles + files)
        return unit.errors()
    }
}
