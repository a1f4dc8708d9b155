import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Compiler arguments for a kernel header tree, as the kernel's own build derives them.
enum KernelFlags {
    static let supportDirectory = ".kprobe-run"
    static let asmWorkaroundsFile = "asm_workarounds.h"
    static var asmWorkaroundsPath: String { supportDirectory + "/" + asmWorkaroundsFile }

    /// Forced after kconfig.h. The BPF backend cannot emit `asm goto`, and clang 14 rejects
    /// `asm inline`; kernel headers use both in inline functions that most probes never call.
    /// Redefining the kernel's wrappers after its own compiler_types.h keeps those headers
    /// parseable; a probe that does call such a function gets an assembler error naming why.
    static let asmWorkarounds = """
    /* Written by kprobe-run; forced after include/linux/kconfig.h. */
    #ifndef KPROBE_RUN_ASM_WORKAROUNDS_H
    #define KPROBE_RUN_ASM_WORKAROUNDS_H

    /* The kernel's own definitions first, so that the ones below are the last word. */
    #if __has_include(<linux/compiler_types.h>)
    #include <linux/compiler_types.h>
    #else
    #include <linux/compiler.h>
    #endif

    #ifdef asm_volatile_goto
    #undef asm_volatile_goto
    #endif
    #define asm_volatile_goto(x...) asm volatile("kprobe-run: asm goto cannot be compiled to BPF")

    #ifdef asm_inline
    #undef asm_inline
    #endif
    #define asm_inline asm

    #endif

    """

    /// Warnings kernel headers (and the kernel macros probes use, such as min()/max() and
    /// READ_ONCE) trigger under clang that say nothing about the probe. Unknown ones are
    /// ignored so the same list works for clang 14 and later.
    static let quietWarnings = [
        "-Wno-unknown-warning-option",
        "-Wno-gnu-variable-sized-type-not-at-end",
        "-Wno-address-of-packed-member",
        "-Wno-pointer-sign",
        "-Wno-unused-value",
        "-Wno-compare-distinct-pointer-types",
        "-Wno-tautological-compare",
    ]

    /// kbuild's LINUXINCLUDE for a tree whose sources are in `source` and generated headers in
    /// `build` (the same directory for kheaders archives and most installed header packages).
    static func arguments(source: String, build: String, arch: KernelArch, asmWorkarounds: String) -> [String] {
        let a = "arch/\(arch.rawValue)"
        var dirs = ["\(source)/\(a)/include", "\(build)/\(a)/include/generated", "\(source)/include"]
        if build != source { dirs.append("\(build)/include") }
        dirs += [
            "\(source)/\(a)/include/uapi", "\(build)/\(a)/include/generated/uapi",
            "\(source)/include/uapi", "\(build)/include/generated/uapi",
        ]
        var args = ["-nostdinc"]
        args += dirs.map { "-I" + $0 }
        args += ["-include", "\(source)/include/linux/kconfig.h", "-include", asmWorkarounds]
        args += [
            "-D__KERNEL__", "-D__BPF_TRACING__", "-D" + arch.targetArchMacro,
            "-DKBUILD_MODNAME=\"kprobe_run\"",
        ]
        return args + quietWarnings
    }

    /// For vmlinux.h: types only, compiled straight for the bpf target. KPROBE_RUN_BTF lets one
    /// probe build against either kind of kernel types (see bpf-examples/vfsopen.c).
    static func btfArguments(directory: String, arch: KernelArch) -> [String] {
        ["-I" + directory, "-D" + arch.targetArchMacro, "-D__BPF_TRACING__", "-DKPROBE_RUN_BTF=1"]
    }

    /// The architectures a tree has headers for (a kheaders archive holds exactly one).
    static func architectures(inTree root: String) -> [KernelArch] {
        architectures { FileSystem.isDirectory(root + "/" + $0) }
    }

    /// `isDirectory` answers for a path relative to the tree's root.
    static func architectures(isDirectory: (String) -> Bool) -> [KernelArch] {
        KernelArch.allCases.filter { isDirectory("arch/\($0.rawValue)/include") }
    }

    /// Picks the architecture: the override if the tree has it, the tree's only one, or the
    /// machine's among several. `isDirectory` answers for a path relative to the tree's root
    /// (a tree still in memory: `ArchivePlan`).
    static func architecture(ofTree root: String, override: KernelArch?, description: String,
                             isDirectory: ((String) -> Bool)? = nil) throws(HeaderError) -> KernelArch {
        let present = isDirectory.map { architectures(isDirectory: $0) } ?? architectures(inTree: root)
        if let override {
            guard present.contains(override) else {
                throw HeaderError("\(description) has no headers for \(override.rawValue) (arch/\(override.rawValue)/include is missing; it has: \(present.map(\.rawValue).joined(separator: ", ")))); use headers built for the target device")
            }
            return override
        }
        if present.count == 1 { return present[0] }
        let machine = RunningKernel.machine
        if let native = KernelArch(machine: machine), present.contains(native) { return native }
        if present.isEmpty {
            throw HeaderError("\(description) has no arch/*/include directory, so it is not a kernel header tree; point --headers at a kernel build directory, a kheaders archive or kheaders.ko")
        }
        throw HeaderError("\(description) has headers for \(present.map(\.rawValue).joined(separator: ", ")) but not for this machine (\(machine)); name the target architecture explicitly")
    }

    /// Writes the workaround header into an entry being built; returns its manifest line.
    static func writeAsmWorkarounds(into rootFD: Int32, display: String) throws(HeaderError) -> TreeMember {
        if mkdirat(rootFD, supportDirectory, 0o755) != 0, errno != EEXIST {
            throw HeaderError("cannot create \(display)/\(supportDirectory): \(Errno.current)")
        }
        let directory: FileDescriptor
        do {
            directory = try FileDescriptor.openDirectory(supportDirectory, relativeTo: rootFD)
        } catch {
            throw HeaderError("refusing \(display)/\(supportDirectory): \(error) (the archive must not contain it)")
        }
        let bytes = Array(asmWorkarounds.utf8)
        do {
            // Inside a temporary tree: the cache's syncfs of the whole tree makes it durable.
            try TreeOps.writeAtomically(bytes, name: asmWorkaroundsFile, in: directory.rawValue, durable: false)
        } catch {
            throw HeaderError("cannot write \(display)/\(asmWorkaroundsPath): \(error)")
        }
        return TreeMember(path: asmWorkaroundsPath, kind: .file(size: Int64(bytes.count)))
    }

    /// UTS_RELEASE from include/generated/utsrelease.h, made safe for a file name.
    static let utsReleasePath = "include/generated/utsrelease.h"

    static func release(ofTreeAt fd: Int32) -> String? {
        TreeOps.read(utsReleasePath, in: fd, limit: 4096).flatMap(parseRelease)
    }

    static func release(ofTree path: String) -> String? {
        (try? FileSystem.read(path + "/include/generated/utsrelease.h")).flatMap(parseRelease)
    }

    static func parseRelease(_ bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let range = text.firstRange(of: "UTS_RELEASE \"") else { return nil }
        let value = text[range.upperBound...].prefix { $0 != "\"" && $0 != "\n" }
        let safe = String(value.prefix(64).map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || "._+~-".contains(c)) ? c : "_"
        })
        return safe.isEmpty ? nil : safe
    }
}
