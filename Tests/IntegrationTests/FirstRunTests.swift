import Foundation
import Glibc
import KprobeSupport
import Testing
import TestSupport

/// A first run with an empty cache: the compile reads the kernel headers from the decompressed
/// archive in memory while the cache entry is written beside it.
@Suite(.serialized) struct FirstRunTests {
    static let archive = TestInputs.testKernelArchive
    static let probe = Tool.packageRoot + "/bench/probes/exec_kheaders.c"

    func entries(_ cache: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: cache + "/headers")) ?? []
    }

    @Test(.enabled(if: FileSystem.isRegularFile(archive))) func objectFromMemoryIsTheObjectFromTheFiles() throws {
        let scratch = try ScratchDirectory()
        let cache = scratch.path + "/cache"
        let env = ["KPROBE_RUN_CACHE_DIR": cache]
        let first = try Tool.run(["compile", Self.probe, "--headers", Self.archive, "-o", scratch.path + "/memory.o", "-v"],
                                 environment: env)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("in memory"), "\(first.stderr)")
        // kprobe-run waited for the entry before it exited.
        let names = entries(cache).filter { !$0.hasPrefix(".") }
        #expect(names.count == 1)
        #expect(FileSystem.isRegularFile(cache + "/headers/" + (names.first ?? "") + "/MANIFEST"))
        #expect(!entries(cache).contains { $0.hasPrefix(".tmp-") })

        // The same compile from the files (no compile cache, no precompiled header).
        try? FileManager.default.removeItem(atPath: cache + "/objects")
        let pch = cache + "/pch"
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: pch)) ?? []).contains(where: { $0.contains(".tmp") }) {
            Thread.sleep(forTimeInterval: 0.2)
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: pch)) ?? [] where name.hasSuffix(".pch") {
            try? FileManager.default.removeItem(atPath: pch + "/" + name)
        }
        let second = try Tool.run(["compile", Self.probe, "--headers", Self.archive, "-o", scratch.path + "/files.o", "-v"],
                                  environment: env)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(!second.stderr.contains("in memory"), "\(second.stderr)")
        let fromMemory = try #require(FileManager.default.contents(atPath: scratch.path + "/memory.o"))
        let fromFiles = try #require(FileManager.default.contents(atPath: scratch.path + "/files.o"))
        #expect(fromMemory == fromFiles)
    }

    /// SIGKILL while the entry is being written leaves a temporary directory and no entry; the
    /// next run removes it and unpacks again.
    @Test(.enabled(if: FileSystem.isRegularFile(archive))) func killDuringTheWriteIsRepaired() throws {
        let scratch = try ScratchDirectory()
        let cache = scratch.path + "/cache"
        var env = ProcessInfo.processInfo.environment
        env["KPROBE_RUN_CACHE_DIR"] = cache
        var killed = false
        let run = try Tool.run(["compile", Self.probe, "--headers", Self.archive, "-o", scratch.path + "/p.o", "-v"],
                               completeEnvironment: env, timeout: 120, interval: 0.01) { process, output in
            if !killed, output.strings.1.contains("in memory") {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            }
        }
        #expect(killed)
        #expect(run.uncaughtSignal)
        for name in entries(cache) where !name.hasPrefix(".") {
            // Only an entry the writer finished before the kill: complete, with its MANIFEST.
            #expect(FileSystem.isRegularFile(cache + "/headers/" + name + "/MANIFEST"))
        }

        let repair = try Tool.run(["headers", "fetch", "--headers", Self.archive, "-v"], environment: ["KPROBE_RUN_CACHE_DIR": cache])
        #expect(repair.status == 0, "\(repair.stderr)")
        #expect(!entries(cache).contains { $0.hasPrefix(".tmp-") })
        let names = entries(cache).filter { !$0.hasPrefix(".") }
        #expect(names.count == 1)
        #expect(FileSystem.isRegularFile(cache + "/headers/" + (names.first ?? "") + "/include/linux/sched.h"))
    }
}
