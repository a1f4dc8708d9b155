import Foundation
import Glibc
import KprobeSupport
@testable import ProbeCompiler
import Synchronization
import Testing
import TestSupport

/// A first run's compile reads the headers from the decompressed archive in memory, at the
/// paths of the cache entry still being written (`HeaderImage`).
@Suite struct HeaderImageTests {
    /// One header with text after it in the image (as in a tar whose file fills its last block):
    /// the worker must not read past it.
    static let exact = "#define EXACT 7\n" + String(repeating: "/* fill */\n", count: 40)
    static let small = "struct small { int a; long b; };\n"

    static let probe = """
        #include <small.h>
        #include <exact.h>
        char LICENSE[] SEC("license") = "GPL";
        struct small global_small;
        SEC("tracepoint/syscalls/sys_enter_openat")
        int on_openat(void *ctx)
        {
            global_small.a = EXACT;
            bpf_printk("openat %d", global_small.a);
            return 0;
        }
        """

    /// The image: small.h, NUL padding, then exact.h followed directly by other bytes.
    static func image() -> (bytes: [UInt8], files: [HeaderImage.File]) {
        var bytes = Array(small.utf8)
        bytes += [UInt8](repeating: 0, count: 512 - bytes.count)
        let exactOffset = bytes.count
        bytes += Array(exact.utf8) + Array("#error read past the end of exact.h\n".utf8)
        return (bytes, [.init(path: "include/small.h", offset: 0, size: small.utf8.count),
                        .init(path: "include/exact.h", offset: exactOffset, size: exact.utf8.count)])
    }

    /// `image()` in a file of `scratch`, opened for reading (the worker reads a memfd the same way).
    static func openImage(in scratch: ScratchDirectory) throws -> Int32 {
        let path = scratch.path + "/image"
        try Data(image().bytes).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CompileError("cannot open \(path): \(Errno.current)") }
        return fd
    }

    static func headerImage(root: String, descriptor: Int32, scratch: ScratchDirectory) -> HeaderImage {
        let (bytes, files) = image()
        return HeaderImage(root: root, descriptor: descriptor, size: bytes.count, files: files, lockPath: scratch.path + "/headers/.lock")
    }

    @Test func compileFromTheImageGivesTheObjectOfTheFiles() throws {
        let scratch = try ScratchDirectory()
        let root = scratch.path + "/headers/entry"
        try FileManager.default.createDirectory(atPath: root + "/include", withIntermediateDirectories: true)
        try Data(Self.small.utf8).write(to: URL(fileURLWithPath: root + "/include/small.h"))
        try Data(Self.exact.utf8).write(to: URL(fileURLWithPath: root + "/include/exact.h"))
        let request = try probeRequest(Self.probe, arguments: ["-I" + root + "/include"])
        let fromFiles = try builtWorker().compile(request)

        // The entry is not there yet: only the image has the headers.
        #expect(rename(root, root + ".written-later") == 0)
        #expect(throws: CompileError.self) { try builtWorker().compile(request) }

        let fd = try Self.openImage(in: scratch)
        defer { close(fd) }
        var fromMemory = request
        fromMemory.headerImage = Self.headerImage(root: root, descriptor: fd, scratch: scratch)
        let compiled = try builtWorker().compile(fromMemory)
        #expect(compiled.elf == fromFiles.elf)
        #expect(compiled.dependencies.contains(root + "/include/exact.h"))
    }

    /// Paths resolve in the image as in the written tree: a directory that only the image has
    /// (its files imply it) is an include directory, `..` is resolved, and a path the image does
    /// not have is looked for on disk.
    @Test func pathsResolveAsInTheWrittenTree() throws {
        let scratch = try ScratchDirectory()
        let root = scratch.path + "/headers/entry"
        let fd = try Self.openImage(in: scratch)
        defer { close(fd) }
        let probe = """
            #include <../include/small.h>
            #include "\(root)/include/./exact.h"
            #if __has_include(<missing.h>)
            #error missing.h is not in the image
            #endif
            char LICENSE[] SEC("license") = "GPL";
            struct small global_small;
            SEC("tracepoint/syscalls/sys_enter_openat")
            int on_openat(void *ctx)
            {
                global_small.a = EXACT;
                return 0;
            }
            """
        var request = try probeRequest(probe, arguments: ["-I" + root + "/include"])
        request.headerImage = Self.headerImage(root: root, descriptor: fd, scratch: scratch)
        let compiled = try builtWorker().compile(request)
        #expect(!compiled.elf.isEmpty)
        #expect(compiled.dependencies.contains { $0.hasSuffix("small.h") })
    }

    /// The precompiled-header builder of a first run waits for the entry's writer (it holds the
    /// header lock), and builds only from a complete entry.
    @Test func builderWaitsForTheEntry() throws {
        let scratch = try ScratchDirectory()
        let root = scratch.path + "/entry"
        mkdir(root, 0o700)
        let image = HeaderImage(root: root, descriptor: -1, size: 0, files: [], lockPath: scratch.path + "/.lock")
        #expect(PrecompiledHeaders.waitForEntry(of: nil))
        #expect(!PrecompiledHeaders.waitForEntry(of: image))

        // A writer: holds the lock, completes the entry, then lets go.
        let released = Mutex(false)
        let locked = DispatchSemaphore(value: 0)
        Thread {
            guard let lock = try? FileLock(image.lockPath, relativeTo: AT_FDCWD) else { return }
            locked.signal()
            Thread.sleep(forTimeInterval: 0.3)
            _ = FileManager.default.createFile(atPath: root + "/MANIFEST", contents: Data())
            released.withLock { $0 = true }
            lock.held()
        }.start()
        locked.wait()
        #expect(PrecompiledHeaders.waitForEntry(of: image))
        #expect(released.withLock { $0 })
    }
}
