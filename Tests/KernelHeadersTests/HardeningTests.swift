import Foundation
import Glibc
@testable import KernelHeaders
import KprobeSupport
import TestSupport
import Testing

/// Issue 14.6: the header cache's answers to damaged input say what is wrong and never cache it.
@Suite struct HeaderHardeningTests {
    /// A MANIFEST cut after its header lines used to verify (no member line failed), so every later
    /// run blamed the archive; it is now incomplete, and the entry is unpacked again.
    @Test(.enabled(if: TestKernel.available)) func manifestCutToItsHeaderIsUnpackedAgain() throws {
        let scratch = try ScratchDirectory()
        let first = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        let manifest = try #require(readFile(first.root + "/MANIFEST"))
        let reused = LogLines()
        _ = try HeaderLocator(options: options(scratch, source: TestKernel.archive, log: reused)).resolve()
        #expect(!reused.all.contains { $0.hasPrefix("unpacked ") }, "a whole manifest must verify: \(reused.all)")
        let text = String(decoding: manifest, as: UTF8.self)
        #expect(text.hasSuffix("end \(text.split(separator: "\n").count - 5)\n"))
        let header = text.split(separator: "\n").prefix(4).joined(separator: "\n") + "\n"
        writeFile(first.root + "/MANIFEST", Array(header.utf8))
        let lines = LogLines()
        let again = try HeaderLocator(options: options(scratch, source: TestKernel.archive, log: lines)).resolve()
        #expect(lines.all.contains { $0.contains("incomplete or damaged") }, "\(lines.all)")
        #expect(readFile(again.root + "/MANIFEST") == manifest)
        // Cut in the middle, at a line end: still incomplete.
        let half = text.split(separator: "\n").prefix(200).joined(separator: "\n") + "\n"
        writeFile(again.root + "/MANIFEST", Array(half.utf8))
        _ = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        #expect(readFile(again.root + "/MANIFEST") == manifest)
    }

    /// An archive that ends at a valid end-of-archive block but lacks what every kheaders archive
    /// holds is refused, not cached to fail every compile with "kconfig.h file not found".
    @Test func archiveWithoutKheadersFilesIsIncompleteAndNotCached() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/cut.tar.xz"
        writeArchive([.dir("arch/x86/include/"), .file("include/linux/types.h")], to: archive)
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: archive)).resolve()
        }
        #expect(error?.kind == .noKernelHeaders)
        #expect(error?.message.contains("is incomplete: it lacks include/linux/kconfig.h and include/generated/autoconf.h") == true,
                "\(error?.message ?? "")")
        #expect(scratch.names("cache/headers").allSatisfy { $0.hasPrefix(".") && !$0.hasPrefix(".tmp") })
    }

    /// A member name with terminal escape sequences is shown escaped, never written raw.
    @Test func controlCharactersOfMemberNamesAreEscaped() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/evil.tar.xz"
        writeArchive([.file("/abs\u{1b}]0;pwned\u{07}name.h")], to: archive)
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator(options: options(scratch, source: archive)).resolve()
        }
        let message = error?.message ?? ""
        #expect(!message.contains("\u{1b}") && !message.contains("\u{07}"), "\(message)")
        #expect(message.contains("abs\\x1b]0;pwned\\x07name.h"), "\(message)")
    }
}

/// Issue 14.7: a run killed after loading kheaders leaves a record; the next run unloads the
/// module if the recording run is gone, and `headers status` says so. (Loading the module for
/// real needs the test VM; this is the record's logic.)
@Suite struct ModuleRecordTests {
    @Test func recordOfAStoppedRunUnloadsOnceAndOfALiveRunNever() throws {
        let scratch = try ScratchDirectory()
        let directory = try HeaderCache(root: scratch.cache, log: { _ in }).headersDirectory()
        let record = ModuleRecord(headersDirectory: directory)
        #expect(record.statusLine == nil)
        #expect(!record.cleanUp(isLoaded: true, unload: { Issue.record("nothing to unload") }, log: { _ in }))

        // This process recorded the load and is alive: another run must not unload.
        record.record()
        #expect(record.recordedPID == getpid())
        #expect(record.statusLine?.contains("still running") == true)
        #expect(!record.cleanUp(isLoaded: true, unload: { Issue.record("a live run's module unloaded") }, log: { _ in }))
        #expect(FileSystem.exists(record.path))

        // A pid above pid_max stands for a run that was killed.
        writeFile(record.path, Array("2147483647\n".utf8))
        #expect(record.statusLine?.contains("the next run unloads it") == true)
        var unloaded = 0
        #expect(record.cleanUp(isLoaded: true, unload: { unloaded += 1 }, log: { _ in }))
        #expect(unloaded == 1)
        #expect(!FileSystem.exists(record.path))

        // Already unloaded by hand: only the record goes.
        writeFile(record.path, Array("2147483647\n".utf8))
        #expect(record.cleanUp(isLoaded: false, unload: { Issue.record("not loaded") }, log: { _ in }))
        #expect(!FileSystem.exists(record.path))
    }

    @Test func statusReportsARecordLeftBehind() throws {
        let scratch = try ScratchDirectory()
        let directory = try HeaderCache(root: scratch.cache, log: { _ in }).headersDirectory()
        writeFile(directory + "/" + ModuleRecord.name, Array("2147483647\n".utf8))
        let status = HeaderLocator(options: options(scratch)).status().description
        #expect(status.contains("loaded by kprobe-run pid 2147483647, which was stopped before unloading it"), "\(status)")
    }
}
