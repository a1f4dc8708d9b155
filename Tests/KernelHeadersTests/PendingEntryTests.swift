import Foundation
import Glibc
import KernelHeaders
import KprobeSupport
import Synchronization
import Testing
import TestSupport

/// A compile's resolve (`unpackInBackground`): the tree is served from memory while its cache
/// entry is written on another thread, and the entry ends up as a synchronous unpack makes it.
@Suite(.serialized) struct PendingEntryTests {
    func inBackground(_ scratch: ScratchDirectory, source: String, log: LogLines? = nil) -> HeaderOptions {
        var options = options(scratch, source: source, log: log)
        options.unpackInBackground = true
        return options
    }

    @Test(.enabled(if: TestKernel.available)) func entryWrittenMeanwhileEqualsASynchronousUnpack() throws {
        let scratch = try ScratchDirectory()
        let log = LogLines()
        let set = try HeaderLocator(options: inBackground(scratch, source: TestKernel.archive, log: log)).resolve()
        let pending = try #require(set.pending)
        #expect(pending.root == set.root)
        #expect(log.all.contains { $0.hasPrefix("compiling from ") && $0.contains("in memory") })

        // What the compiler reads from memory is the archive's bytes, links resolved, plus the
        // forced-include header kprobe-run adds.
        let paths = Set(pending.files.map(\.path))
        #expect(paths.contains("include/linux/sched.h"))
        #expect(paths.contains("include/dt-bindings/input/linux-event-codes.h"))
        #expect(paths.contains(".kprobe-run/asm_workarounds.h"))
        #expect(pending.text(of: set.root + "/include/generated/utsrelease.h")?.contains(TestKernel.release) == true)

        #expect(pending.wait() == nil)
        #expect(FileSystem.isRegularFile(set.root + "/MANIFEST"))
        for file in pending.files {
            let onDisk = try #require(readFile(set.root + "/" + file.path), "\(file.path)")
            #expect(pending.text(of: set.root + "/" + file.path) == String(decoding: onDisk, as: UTF8.self), "\(file.path)")
        }
        #expect(!scratch.names("cache/headers").contains { $0.hasPrefix(".tmp-") })

        let other = try ScratchDirectory()
        let synchronous = try HeaderLocator(options: options(other, source: TestKernel.archive)).resolve()
        #expect(synchronous.pending == nil)
        #expect(synchronous.identity == set.identity)
        #expect(synchronous.compileArguments.map { $0.replacingOccurrences(of: other.path, with: scratch.path) } == set.compileArguments)
        #expect(readFile(synchronous.root + "/MANIFEST") == readFile(set.root + "/MANIFEST"))

        // The next resolve finds the entry.
        let again = try HeaderLocator(options: inBackground(scratch, source: TestKernel.archive)).resolve()
        #expect(again.pending == nil)
        #expect(again.root == set.root)
    }

    /// A second run while the first one's entry is still being written waits for the writer's
    /// lock and then uses the entry: one unpack.
    @Test(.enabled(if: TestKernel.available)) func concurrentRunWaitsForTheWriter() throws {
        let scratch = try ScratchDirectory()
        let log = LogLines()
        let first = try HeaderLocator(options: inBackground(scratch, source: TestKernel.archive, log: log)).resolve()
        let pending = try #require(first.pending)
        let second = try HeaderLocator(options: inBackground(scratch, source: TestKernel.archive, log: log)).resolve()
        #expect(second.pending == nil)
        #expect(second.root == first.root)
        #expect(FileSystem.isRegularFile(second.root + "/MANIFEST"))
        #expect(pending.wait() == nil)
        #expect(log.all.filter { $0.hasPrefix("wrote ") || $0.hasPrefix("unpacked ") }.count == 1, "\(log.all)")
    }

    /// Archives whose tree a list of files cannot show (a symlink to a directory) are unpacked
    /// as before, before the compile.
    @Test func symlinkToADirectoryIsUnpackedFirst() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/dirlink.tar.xz"
        writeArchive([.file("include/linux/kconfig.h", "/* kconfig */\n"),
                      .file("include/generated/autoconf.h", "#define CONFIG_X86 1\n"),
                      .dir("arch/x86/include"),
                      .file("arch/x86/include/asm/a.h", "int a;\n"),
                      .link("include/asm", to: "../arch/x86/include/asm")], to: archive)
        let set = try HeaderLocator(options: inBackground(scratch, source: archive)).resolve()
        #expect(set.pending == nil)
        #expect(FileSystem.isRegularFile(set.root + "/include/asm/a.h"))
    }

    /// What the writer would refuse is refused before anything is compiled from memory.
    @Test func collisionsAreRefusedBeforeTheCompile() throws {
        let scratch = try ScratchDirectory()
        let base: [Member] = [.file("include/linux/kconfig.h", "/* kconfig */\n"), .file("include/generated/autoconf.h", "\n"),
                              .dir("arch/x86/include")]
        let cases: [[Member]] = [
            [.file("include/x", "file"), .file("include/x/y.h", "under a file")],
            [.file("include/x/y.h", "in a directory"), .file("include/x", "over a directory")],
            [.file("include/x.h", "file"), .link("include/x.h", to: "kconfig.h")],
        ]
        for (index, members) in cases.enumerated() {
            let archive = scratch.path + "/collision-\(index).tar.xz"
            writeArchive(base + members, to: archive)
            #expect(throws: HeaderError.self) { try HeaderLocator(options: inBackground(scratch, source: archive)).resolve() }
            #expect(!scratch.names("cache/headers").contains { !$0.hasPrefix(".") })
            #expect(!scratch.names("cache/headers").contains { $0.hasPrefix(".tmp-") })
        }
    }
}
