import Testing
import Glibc
import KprobeSupport
@testable import ProbeCompiler
import TestSupport

/// A stand-in worker that answers with a fixed object, counts its starts, and fails once its
/// gate file is removed: a compile that succeeds after that came from the cache.
struct CannedWorker {
    let scratch: ScratchDirectory
    let path: String
    let gate: String
    let starts: String
    let cache: CacheRoot

    init(response: WorkerProtocol.Response) throws {
        scratch = try ScratchDirectory()
        gate = try scratch.write("gate", "")
        starts = scratch.path + "/starts"
        let responsePath = scratch.path + "/response"
        try FileSystem.writeAtomically(WorkerProtocol.encode(response), to: responsePath)
        path = try scratch.script("worker", "cat >/dev/null\necho started >>'\(starts)'\n[ -f '\(gate)' ] || exit 9\ncat '\(responsePath)'")
        cache = CacheRoot(path: try scratch.makeDirectory("cache"))
    }

    var compiler: WorkerCompiler { WorkerCompiler(workerPath: path) }

    func closeGate() { unlink(gate) }

    var startCount: Int { ((try? FileSystem.readString(starts)) ?? "").split(separator: "\n").count }

    func cache(identity: String = "6.1.192-test-0123456789ab", version: String = KprobeRunVersion.string) -> CompileCache {
        CompileCache(root: cache, headerIdentity: identity, toolVersion: version, precompiledHeaders: false)
    }
}

func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return "." }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Just enough of an ELF header for the cache (it stores bytes; the loader judges them).
let cannedELF: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1] + [UInt8](repeating: 0, count: 57) + Array("BPF object".utf8)

@Suite struct CompileCacheTests {
    let request = CompileRequest(sourcePath: "probe.c", source: "SEC(\"tracepoint/a/b\") int f(void *c) { return 0; }\n",
                                 frontendTriple: "bpf", arguments: ["-DX=1", "-I/some/dir"],
                                 virtualFiles: [VirtualFile(path: "/kprobe-run-virtual/v.h", contents: "int v;\n")])

    @Test func hitSkipsTheWorker() throws {
        let worker = try CannedWorker(response: .init(status: 0, elf: cannedELF, diagnostics: "probe.c:1:1: warning: something\n"))
        let first = try worker.compiler.compile(request, cache: worker.cache())
        #expect(!first.fromCache)
        #expect(worker.startCount == 1)
        worker.closeGate()
        let second = try worker.compiler.compile(request, cache: worker.cache())
        #expect(second.fromCache)
        #expect(second.elf == cannedELF)
        #expect(second.diagnostics == "probe.c:1:1: warning: something\n")
        #expect(worker.startCount == 1)
    }

    @Test func anyChangeMisses() throws {
        let worker = try CannedWorker(response: .init(status: 0, elf: cannedELF, diagnostics: ""))
        _ = try worker.compiler.compile(request, cache: worker.cache())
        worker.closeGate()
        var changedSource = request
        changedSource.source += " "
        var changedFlag = request
        changedFlag.arguments[0] = "-DX=2"
        var addedFlag = request
        addedFlag.arguments.append("-Wall")
        var changedTriple = request
        changedTriple.frontendTriple = "x86_64-linux-gnu"
        var changedVirtual = request
        changedVirtual.virtualFiles[0].contents = "long v;\n"
        var changedName = request
        changedName.sourcePath = "other.c"
        for variant in [changedSource, changedFlag, addedFlag, changedTriple, changedVirtual, changedName] {
            #expect(throws: CompileError.self) { try worker.compiler.compile(variant, cache: worker.cache()) }
        }
        #expect(throws: CompileError.self) { try worker.compiler.compile(request, cache: worker.cache(identity: "6.1.192-test-ffffffffffff")) }
        #expect(throws: CompileError.self) { try worker.compiler.compile(request, cache: worker.cache(version: "99.0.0")) }
        #expect(try worker.compiler.compile(request, cache: worker.cache()).fromCache)
    }

    /// The flag list is hashed with lengths: moving text between flags is a change.
    @Test func keysAreUnambiguous() {
        let cache = CompileCache(root: CacheRoot(path: "/nonexistent"), headerIdentity: "h")
        var a = request
        a.arguments = ["-DA", "B"]
        var b = request
        b.arguments = ["-DAB"]
        #expect(cache.key(for: a, workerIdentity: "w", workingDirectory: "/d") != cache.key(for: b, workerIdentity: "w", workingDirectory: "/d"))
        #expect(cache.key(for: a, workerIdentity: "w", workingDirectory: "/d") != cache.key(for: a, workerIdentity: "w2", workingDirectory: "/d"))
        // A relative probe path and its quoted includes mean other files in another directory.
        #expect(cache.key(for: a, workerIdentity: "w", workingDirectory: "/d") != cache.key(for: a, workerIdentity: "w", workingDirectory: "/e"))
        var withPCH = a
        withPCH.precompiledHeaders = PrecompiledHeaderSettings(directory: "/x", headerIdentity: "h")
        #expect(cache.key(for: a, workerIdentity: "w", workingDirectory: "/d") == cache.key(for: withPCH, workerIdentity: "w", workingDirectory: "/d"))
    }

    @Test func rebuiltWorkerMisses() throws {
        let worker = try CannedWorker(response: .init(status: 0, elf: cannedELF, diagnostics: ""))
        _ = try worker.compiler.compile(request, cache: worker.cache())
        // Same contents, new modification time: as after a rebuild.
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, worker.path, &times, 0) == 0)
        _ = try worker.compiler.compile(request, cache: worker.cache())
        #expect(worker.startCount == 2)
    }

    @Test func outsideIncludeChangeInvalidates() throws {
        let outside = try ScratchDirectory()
        let header = try outside.write("mystruct.h", "struct mine { int a; };\n")
        let worker = try CannedWorker(response: .init(
            status: 0, elf: cannedELF, diagnostics: "",
            dependencies: ["probe.c", header, "/kprobe-run-virtual/v.h"]))
        let cache = worker.cache()
        _ = try worker.compiler.compile(request, cache: cache)
        let key = cache.key(for: request, workerIdentity: ExecutableIdentity.of(path: worker.path), workingDirectory: currentDirectory())
        let manifest = try FileSystem.readString(worker.cache.path + "/objects/\(key).deps")
        #expect(manifest.contains(" " + header + "\n"))
        #expect(!manifest.contains("kprobe-run-virtual"))
        #expect(!manifest.contains("probe.c"))

        // Touched but unchanged: still a hit (the digest decides).
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, header, &times, 0) == 0)
        #expect(cache.lookup(key: key) != nil)

        try outside.write("mystruct.h", "struct mine { int b; };\n")
        #expect(cache.lookup(key: key) == nil)
        _ = try worker.compiler.compile(request, cache: cache)
        #expect(worker.startCount == 2)
        #expect(cache.lookup(key: key) != nil)
        unlink(header)
        #expect(cache.lookup(key: key) == nil)
    }

    @Test func damagedEntriesAreIgnored() throws {
        let worker = try CannedWorker(response: .init(status: 0, elf: cannedELF, diagnostics: "warning\n"))
        let cache = worker.cache()
        _ = try worker.compiler.compile(request, cache: cache)
        let key = cache.key(for: request, workerIdentity: ExecutableIdentity.of(path: worker.path), workingDirectory: currentDirectory())
        let base = worker.cache.path + "/objects/" + key
        let goodManifest = try FileSystem.read(base + ".deps")
        #expect(cache.lookup(key: key)?.elf == cannedELF)

        let damages: [(String, () throws -> Void)] = [
            ("truncated object", { try FileSystem.writeAtomically(Array(cannedELF.prefix(20)), to: base + ".o") }),
            ("flipped object byte", { var bytes = cannedELF; bytes[70] ^= 1; try FileSystem.writeAtomically(bytes, to: base + ".o") }),
            ("missing manifest", { unlink(base + ".deps") }),
            ("truncated manifest", { try FileSystem.writeAtomically(Array(goodManifest.dropLast(3)), to: base + ".deps") }),
            ("garbage manifest", { try FileSystem.writeAtomically(Array("kprobe-run compile cache 1\nobject x\n".utf8), to: base + ".deps") }),
            ("empty manifest", { try FileSystem.writeAtomically([], to: base + ".deps") }),
            // What a crash can leave of files written without fsync (`store` does not flush).
            ("zeroed manifest", { try FileSystem.writeAtomically([UInt8](repeating: 0, count: goodManifest.count), to: base + ".deps") }),
            ("zeroed object", { try FileSystem.writeAtomically([UInt8](repeating: 0, count: cannedELF.count), to: base + ".o") }),
        ]
        for (what, damage) in damages {
            try damage()
            #expect(cache.lookup(key: key) == nil, "\(what)")
            // The next compile replaces the entry.
            let compiled = try worker.compiler.compile(request, cache: cache)
            #expect(!compiled.fromCache, "\(what)")
            #expect(cache.lookup(key: key)?.elf == cannedELF, "\(what)")
        }
    }

    @Test func unwritableCacheStillCompiles() throws {
        let worker = try CannedWorker(response: .init(status: 0, elf: cannedELF, diagnostics: ""))
        let blocked = try worker.scratch.write("not-a-directory", "")
        let cache = CompileCache(root: CacheRoot(path: blocked), headerIdentity: "h", precompiledHeaders: true)
        let compiled = try worker.compiler.compile(request, cache: cache)
        #expect(compiled.elf == cannedELF)
        #expect(compiled.notes.contains { $0.hasPrefix("not stored in the compile cache") })
    }

    @Test func failedCompileIsNotStored() throws {
        let worker = try CannedWorker(response: .init(status: 1, elf: [], diagnostics: "probe.c:1:1: error: no\n"))
        #expect(throws: CompileError.self) { try worker.compiler.compile(request, cache: worker.cache()) }
        #expect(throws: CompileError.self) { try worker.compiler.compile(request, cache: worker.cache()) }
        #expect(worker.startCount == 2)
    }

    /// The real worker reports the probe's own header, and the cache lists it.
    @Test func realWorkerReportsOutsideIncludes() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("mystruct.h", "struct mine { int a; };\n")
        var request = try probeRequest("#include \"mystruct.h\"\nSEC(\"tracepoint/a/b\") int f(void *c) { struct mine m = {1}; return m.a; }\n")
        request.sourcePath = scratch.path + "/probe.c"
        let compiler = try builtWorker()
        let cacheRoot = CacheRoot(path: try scratch.makeDirectory("cache"))
        let cache = CompileCache(root: cacheRoot, headerIdentity: "test")
        let compiled = try compiler.compile(request, cache: cache)
        #expect(compiled.dependencies.contains(scratch.path + "/mystruct.h"))
        #expect(try compiler.compile(request, cache: cache).fromCache)
        try scratch.write("mystruct.h", "struct mine { long a; };\n")
        let recompiled = try compiler.compile(request, cache: cache)
        #expect(!recompiled.fromCache)
        #expect(recompiled.elf != compiled.elf)
    }
}
