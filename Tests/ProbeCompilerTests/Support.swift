import Glibc
import KprobeSupport
@testable import ProbeCompiler
import TestSupport

/// The worker built alongside the tests: `$KPROBE_RUN_CC`, else beside the test bundle, which
/// SwiftPM puts in the same products directory (.build/debug or .build-<scratch>/debug).
func builtWorker() throws -> WorkerCompiler {
    let compiler = WorkerCompiler()
    guard FileSystem.isRegularFile(compiler.workerPath) else {
        throw CompileError("kprobe-run-cc not found at \(compiler.workerPath): run swift build first or set KPROBE_RUN_CC")
    }
    return compiler
}

/// The kernel's fixed-size integer types, which libbpf's headers use without declaring them.
let scalarTypedefs = """
    typedef unsigned char __u8;
    typedef unsigned short __u16;
    typedef unsigned int __u32;
    typedef unsigned long long __u64;
    typedef signed char __s8;
    typedef short __s16;
    typedef int __s32;
    typedef long long __s64;
    typedef __u16 __be16;
    typedef __u32 __be32;
    typedef __u32 __wsum;
    """

/// The request every real compile uses: libbpf's headers and the fixed types they need.
func probeRequest(_ body: String, triple: String = "bpf", arguments: [String] = []) throws -> CompileRequest {
    let libbpf = try LibbpfHeaders.load()
    let source = """
        \(scalarTypedefs)
        #include <bpf/bpf_helpers.h>

        """ + body
    return CompileRequest(
        sourcePath: "probe.c", source: source, frontendTriple: triple,
        arguments: ["-nostdinc", libbpf.includeArgument] + arguments, virtualFiles: libbpf.virtualFiles)
}

/// Number of lines `probeRequest` puts before the body.
let preludeLines = 12

/// Just enough ELF64 reading to check what the compiler produced.
struct ELFObject {
    let bytes: [UInt8]

    func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
    func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }

    var isELF: Bool { bytes.count > 64 && Array(bytes[0..<4]) == [0x7f, 0x45, 0x4c, 0x46] }
    var machine: Int { u16(18) }

    /// The bytes of the first section called `name`.
    func section(named name: String) -> [UInt8]? {
        let offset = u64(0x28), size = u16(0x3a)
        guard let index = sectionNames.firstIndex(of: name) else { return nil }
        let header = offset + index * size
        let start = u64(header + 0x18), length = u64(header + 0x20)
        return Array(bytes[start..<(start + length)])
    }

    func contains(_ text: String) -> Bool {
        let needle = Array(text.utf8)
        guard needle.count <= bytes.count else { return false }
        return (0...(bytes.count - needle.count)).contains { Array(bytes[$0..<($0 + needle.count)]) == needle }
    }

    var sectionNames: [String] {
        let offset = u64(0x28), size = u16(0x3a), count = u16(0x3c), names = u16(0x3e)
        let namesOffset = u64(offset + names * size + 0x18)
        return (0..<count).map { index in
            var at = namesOffset + u32(offset + index * size)
            var name: [UInt8] = []
            while bytes[at] != 0 { name.append(bytes[at]); at += 1 }
            return String(decoding: name, as: UTF8.self)
        }
    }
}
