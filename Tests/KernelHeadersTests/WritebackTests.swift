import Glibc
@testable import KernelHeaders
import KprobeSupport
import Testing
import TestSupport

/// `Writeback`: a cache entry's tree is flushed while it is being written, and nothing of it is
/// left open once the unpack returns.
struct WritebackTests {
    /// Descriptors of this process open on something below `directory`.
    func openBelow(_ directory: String) -> [String] {
        ((try? ScratchDirectory.list("/proc/self/fd")) ?? []).compactMap { fd in
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/fd/" + fd, &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            let target = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return target == directory || target.hasPrefix(directory + "/") ? target : nil
        }
    }

    @Test func flushesOnceABatchIsWrittenAndLetsGoOfTheTree() throws {
        let scratch = try ScratchDirectory()
        do {
            let tree = try FileDescriptor.openDirectory(scratch.path)
            let writeback = try #require(Writeback(flushing: tree.rawValue))
            #expect(writeback.flushes == 0)
            // Small files count a page each: a batch of them starts a flush too.
            for _ in 0..<(Writeback.batchBytes / 4096) { writeback.wrote(10) }
            // Not a timing check: the thread flushes when it gets to run.
            for _ in 0..<1000 where writeback.flushes == 0 { usleep(10_000) }
            #expect(writeback.flushes == 1)
            writeback.finish()
            writeback.finish()
        }
        // Its own descriptor of the tree is closed with it.
        #expect(openBelow(scratch.path).isEmpty)
    }

    @Test func lessThanABatchIsLeftToTheLastFlush() throws {
        let scratch = try ScratchDirectory()
        let tree = try FileDescriptor.openDirectory(scratch.path)
        let writeback = try #require(Writeback(flushing: tree.rawValue))
        writeback.wrote(Writeback.batchBytes - 4096)
        writeback.finish()
        #expect(writeback.flushes == 0)
    }

    /// A cache entry's tree is written with the flushing thread; when the unpack returns nothing
    /// below the cache is still open, and the MANIFEST and forced-include header (written without
    /// an fsync of their own) left no temporaries.
    @Test(.enabled(if: TestKernel.available)) func unpackLeavesNothingOpen() throws {
        let scratch = try ScratchDirectory()
        let set = try HeaderLocator(options: options(scratch, source: TestKernel.archive)).resolve()
        #expect(openBelow(set.root).isEmpty)
        #expect(FileSystem.isRegularFile(set.root + "/MANIFEST"))
        #expect(!(try ScratchDirectory.list(set.root)).contains { $0.contains(".tmp-") })
        #expect(!(try ScratchDirectory.list(set.root + "/.kprobe-run")).contains { $0.contains(".tmp-") })
    }
}
