import Foundation
import Glibc
import KernelHeaders
import KprobeSupport
import Synchronization
import Testing
import TestSupport

@Suite(.serialized) struct RealArchiveTests {
    @Test(.enabled(if: TestKernel.available)) func tarAndModuleGiveTheSameEntry() throws {
        let scratch = try ScratchDirectory()
        let fromTar = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let manifestFromTar = try #require(readFile(fromTar.root + "/MANIFEST"))
        #expect(fromTar.kind == .archive)
        #expect(fromTar.identity.hasPrefix(TestKernel.release + "-"))
        #expect(fromTar.identity.count == TestKernel.release.count + 13)
        #expect(fromTar.root == scratch.cache.path + "/headers/" + fromTar.identity)

        // A second cache, so the module really is unpacked again rather than found.
        let other = try ScratchDirectory()
        let fromModule = try HeaderLocator(options: options(other, source: TestKernel.module)).resolve()
        #expect(fromModule.kind == .moduleFile)
        #expect(fromModule.identity == fromTar.identity)
        #expect(readFile(fromModule.root + "/MANIFEST") == manifestFromTar)

        // And in the same cache the module finds the tar's entry.
        let again = try HeaderLocator(options: options(scratch, source: TestKernel.module)).resolve()
        #expect(again.root == fromTar.root)
    }

    @Test(.enabled(if: TestKernel.available), arguments: ["xz", "gz", "zst"])
    func compressedModuleGivesTheSameEntry(_ compression: String) throws {
        let scratch = try ScratchDirectory()
        let reference = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let module = scratch.path + "/kheaders.ko." + compression
        compressFile(TestKernel.module, to: module, compression: compression)
        let other = try ScratchDirectory()
        let set = try HeaderLocator(options: options(other, source: module)).resolve()
        #expect(set.kind == .moduleFile)
        #expect(set.identity == reference.identity)
        #expect(readFile(set.root + "/MANIFEST") == readFile(reference.root + "/MANIFEST"))
    }

    @Test(.enabled(if: TestKernel.available)) func flagsForTheTestKernel() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let r = set.root
        #expect(set.arch == .x86)
        #expect(set.frontendTriple == "x86_64-linux-gnu")
        let args = set.compileArguments
        #expect(args.first == "-nostdinc")
        let includes = args.filter { $0.hasPrefix("-I") }
        #expect(includes == [
            "-I\(r)/arch/x86/include", "-I\(r)/arch/x86/include/generated", "-I\(r)/include",
            "-I\(r)/arch/x86/include/uapi", "-I\(r)/arch/x86/include/generated/uapi",
            "-I\(r)/include/uapi", "-I\(r)/include/generated/uapi",
        ])
        #expect(args.contains("-D__KERNEL__"))
        #expect(args.contains("-D__TARGET_ARCH_x86"))
        #expect(args.contains("-DKBUILD_MODNAME=\"kprobe_run\""))
        let forced = args.indices.filter { args[$0] == "-include" }.map { args[$0 + 1] }
        #expect(forced == ["\(r)/include/linux/kconfig.h", "\(r)/.kprobe-run/asm_workarounds.h"])
        #expect(FileSystem.isRegularFile("\(r)/.kprobe-run/asm_workarounds.h"))
        let manifest = String(decoding: try #require(readFile(r + "/MANIFEST")), as: UTF8.self)
        #expect(manifest.contains("f ") && manifest.contains(".kprobe-run/asm_workarounds.h"))
        #expect(manifest.split(separator: "\n").filter { $0.hasPrefix("f ") }.count == 6368 + 1)
        #expect(manifest.split(separator: "\n").filter { $0.hasPrefix("l ") }.count == 3)
    }

    @Test(.enabled(if: FileSystem.isRegularFile(TestKernel.arm64Archive))) func arm64Archive() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.arm64Archive)).resolve()
        #expect(set.arch == .arm64)
        #expect(set.frontendTriple == "aarch64-linux-gnu")
        #expect(set.compileArguments.contains("-D__TARGET_ARCH_arm64"))
        #expect(set.compileArguments.contains("-I\(set.root)/arch/arm64/include/generated"))
        let wrong = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: TestKernel.arm64Archive, arch: .x86)).resolve()
        }
        #expect(wrong?.kind == .noKernelHeaders)
    }

    @Test(.enabled(if: TestKernel.available)) func concurrentFirstResolvesUnpackOnce() throws {
        let scratch = try ScratchDirectory()
        let log = LogLines()
        let headers = HeaderLocator(options: options(scratch, source: TestKernel.archive, log: log))
        let results = Mutex<[String]>([])
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<8 {
            Thread {
                let root = (try? headers.resolve().root) ?? "failed"
                results.withLock { $0.append(root) }
                done.signal()
            }.start()
        }
        for _ in 0..<8 { done.wait() }
        let roots = results.withLock { $0 }
        #expect(roots.count == 8)
        #expect(Set(roots).count == 1)
        #expect(!roots.contains("failed"))
        #expect(log.all.filter { $0.hasPrefix("unpacked ") }.count == 1, "\(log.all)")
        #expect(scratch.names("cache/headers").filter { !$0.hasPrefix(".") }.count == 1)
    }

    @Test(.enabled(if: TestKernel.available)) func interruptedExtractionIsNeverUsed() throws {
        let scratch = try ScratchDirectory()
        let archiveBytes = try #require(readFile(TestKernel.archive))
        let name = TestKernel.release + "-" + SHA256.hex(archiveBytes).prefix(12)
        let headersDir = try scratch.cache.directory("headers")
        // What a killed run leaves: a temp dir, and an entry without its MANIFEST.
        mkdir(headersDir + "/.tmp-999999-dead", 0o700)
        writeFile(headersDir + "/.tmp-999999-dead/half.h", Array("half".utf8))
        mkdir(headersDir + "/" + name, 0o700)
        mkdir(headersDir + "/" + name + "/include", 0o700)
        let log = LogLines()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.archive, log: log)).resolve()
        #expect(set.root == headersDir + "/" + name)
        #expect(FileSystem.isRegularFile(set.root + "/MANIFEST"))
        #expect(FileSystem.isRegularFile(set.root + "/include/linux/sched.h"))
        #expect(!FileSystem.exists(headersDir + "/.tmp-999999-dead"))
        #expect(log.all.contains { $0.hasPrefix("unpacked ") })
    }

    @Test(.enabled(if: TestKernel.available)) func damagedEntryIsUnpackedAgain() throws {
        let scratch = try ScratchDirectory()
        let headers = HeaderLocator(options: options(scratch, source: TestKernel.archive))
        let first = try headers.resolve()
        let victim = first.root + "/include/linux/sched.h"
        #expect(unlink(victim) == 0)
        let second = try headers.resolve()
        #expect(second.root == first.root)
        #expect(FileSystem.isRegularFile(victim))

        // A file cut short is noticed by its size.
        truncate(victim, 10)
        _ = try headers.resolve()
        var st = stat()
        stat(victim, &st)
        #expect(st.st_size > 10)

        // Reuse does not unpack.
        let log = LogLines()
        _ = try HeaderLocator(options: options(scratch, source: TestKernel.archive, log: log)).resolve()
        #expect(!log.all.contains { $0.hasPrefix("unpacked ") })
    }

    @Test func plantedSymlinkCacheIsRefused() throws {
        let scratch = try ScratchDirectory()
        let victim = scratch.path + "/victim"
        mkdir(victim, 0o700)
        mkdir(scratch.path + "/cache", 0o700)
        symlink(victim, scratch.path + "/cache/headers")
        let archive = scratch.path + "/a.tar.xz"
        writeArchive([.file("include/linux/kconfig.h"), .file("include/generated/autoconf.h"), .dir("arch/x86/include/")], to: archive)
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: archive)).resolve()
        }
        #expect(error?.message.contains("symlink") == true, "\(error?.message ?? "")")
        #expect(scratch.names("victim").isEmpty)
    }

    @Test(.enabled(if: TestKernel.available)) func pruneRemovesOtherKernels() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let headersDir = scratch.cache.path + "/headers"
        mkdir(headersDir + "/.tmp-1-stale", 0o700)
        let removed = try HeaderLocator(options: options(scratch)).prune()
        if RunningKernel.release != TestKernel.release {
            #expect(removed.contains(set.root))
            #expect(!FileSystem.exists(set.root))
        }
        #expect(removed.contains(headersDir + "/.tmp-1-stale"))
    }

    @Test(.enabled(if: TestKernel.available)) func statusListsEntries() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let status = HeaderLocator(options: options(scratch)).status()
        #expect(status.entries.contains { $0.path == set.root && $0.valid && $0.bytes > 20 << 20 })
        let text = status.description
        #expect(text.contains("kernel: \(RunningKernel.release)"))
        #expect(text.contains(set.root))
        #expect(text.contains("a run uses:"))
    }

    /// Debian's layout: generated headers in the build directory, the rest in a -common tree
    /// named by the build directory's Makefile.
    @Test(.enabled(if: TestKernel.available)) func splitBuildAndSourceTrees() throws {
        let scratch = try ScratchDirectory()
        let source = scratch.path + "/linux-headers-common"
        let build = scratch.path + "/linux-headers-amd64"
        try HeaderLocator.extractArchive(from: TestKernel.archive, to: source)
        for dir in ["", "/include", "/arch", "/arch/x86", "/arch/x86/include"] { mkdir(build + dir, 0o755) }
        #expect(rename(source + "/include/generated", build + "/include/generated") == 0)
        #expect(rename(source + "/arch/x86/include/generated", build + "/arch/x86/include/generated") == 0)
        writeFile(build + "/Makefile", Array("include \(source)/Makefile\n".utf8))

        let set = try HeaderLocator(options: options(scratch, source: build)).resolve()
        #expect(set.kind == .directory)
        #expect(set.arch == .x86)
        #expect(set.root == build)
        #expect(set.compileArguments.filter { $0.hasPrefix("-I") } == [
            "-I\(source)/arch/x86/include", "-I\(build)/arch/x86/include/generated", "-I\(source)/include",
            "-I\(build)/include", "-I\(source)/arch/x86/include/uapi", "-I\(build)/arch/x86/include/generated/uapi",
            "-I\(source)/include/uapi", "-I\(build)/include/generated/uapi",
        ])
        #expect(set.compileArguments.contains("\(source)/include/linux/kconfig.h"))

        // A build directory whose source tree is gone is not a usable tree.
        unlink(build + "/Makefile")
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: build)).resolve()
        }
        #expect(error?.kind == .noKernelHeaders)
    }

    @Test(.enabled(if: TestKernel.available)) func extractMatchesTar() throws {
        let scratch = try ScratchDirectory()
        try HeaderLocator.extractArchive(from: TestKernel.module, to: scratch.path + "/tree")
        #expect(FileSystem.isRegularFile(scratch.path + "/tree/include/linux/sched.h"))
        #expect(FileSystem.isRegularFile(scratch.path + "/tree/arch/x86/include/generated/asm/syscalls_64.h"))
        // An unpacked tree works as --headers DIR, in place.
        let set = try HeaderLocator(options: options(scratch, source: scratch.path + "/tree")).resolve()
        #expect(set.kind == .directory)
        #expect(set.root == scratch.path + "/tree")
        #expect(set.identity.hasPrefix(TestKernel.release + "-"))
        #expect(set.compileArguments.contains("-I\(scratch.path)/tree/include"))
        let forced = set.compileArguments.indices.filter { set.compileArguments[$0] == "-include" }.map { set.compileArguments[$0 + 1] }
        #expect(forced.count == 2)
        #expect(forced.allSatisfy { FileSystem.isRegularFile($0) })
    }
}

@Suite struct BTFTests {
    static var hasBTF: Bool { FileSystem.exists("/sys/kernel/btf/vmlinux") }
    static var hasOtherSource: Bool {
        FileSystem.exists("/sys/kernel/kheaders.tar.xz") || FileSystem.exists("/lib/modules/\(RunningKernel.release)")
    }

    @Test(.enabled(if: hasBTF && !hasOtherSource)) func runningKernelFallsBackToVmlinuxH() throws {
        let scratch = try ScratchDirectory()
        let log = LogLines()
        let set = try HeaderLocator(options: options(scratch, log: log)).resolve()
        #expect(set.kind == .btf)
        #expect(set.frontendTriple == "bpf")
        let header = set.root + "/vmlinux.h"
        #expect(set.root.hasPrefix(scratch.cache.path + "/btf/\(RunningKernel.release)-"))
        #expect(set.compileArguments == ["-I\(set.root)", "-D\(set.arch.targetArchMacro)", "-D__BPF_TRACING__", "-DKPROBE_RUN_BTF=1"])
        let text = String(decoding: try #require(readFile(header)), as: UTF8.self)
        #expect(text.hasPrefix("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n"))
        #expect(text.contains("#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)"))
        #expect(text.contains("struct task_struct {"))
        #expect(text.contains("typedef "))
        #expect(text.hasSuffix("#endif /* __VMLINUX_H__ */\n"))
        #expect(log.all.contains { $0.contains("linux/sched.h") })

        let before = try #require(mtime(header))
        let again = try HeaderLocator(options: options(scratch)).resolve()
        let after = try #require(mtime(header))
        #expect(again.root == set.root)
        #expect(before.tv_sec == after.tv_sec && before.tv_nsec == after.tv_nsec)
    }

    @Test(.enabled(if: hasBTF)) func explicitBTFFile() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: "/sys/kernel/btf/vmlinux")).resolve()
        #expect(set.kind == .btf)
        #expect(FileSystem.isRegularFile(set.root + "/vmlinux.h"))
    }

    @Test func nothingFoundSaysWhatToDo() throws {
        let scratch = try ScratchDirectory()
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: scratch.path + "/missing")).resolve()
        }
        #expect(error?.kind == .noKernelHeaders)
        #expect(error?.message.contains("--headers") == true)
    }
}

@Suite struct ArchTests {
    @Test func machines() {
        #expect(KernelArch(machine: "x86_64") == .x86)
        #expect(KernelArch(machine: "i686") == .x86)
        #expect(KernelArch(machine: "aarch64") == .arm64)
        #expect(KernelArch(machine: "armv7l") == .arm)
        #expect(KernelArch(machine: "riscv64") == .riscv)
        #expect(KernelArch(machine: "ppc64le") == .powerpc)
        #expect(KernelArch(machine: "s390x") == .s390)
        #expect(KernelArch(machine: "mips64") == .mips)
        #expect(KernelArch(machine: "loongarch64") == .loongarch)
        #expect(KernelArch(machine: "vax") == nil)
        #expect(KernelArch.arm64.targetArchMacro == "__TARGET_ARCH_arm64")
        #expect(KernelArch.x86.frontendTriple == "x86_64-linux-gnu")
    }
}
