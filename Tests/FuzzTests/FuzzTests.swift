import CLibArchive
import Glibc
@testable import KernelHeaders
import KprobeSupport
import ProbeCompiler
import Testing

/// Issue 14: every reader of untrusted input fed seeded mutations of a valid input, for a bounded
/// time so that CI runs it. A crash ends the test process; a hang is an input that takes longer
/// than `hangSeconds`. Each test prints its counts (`fuzz: …`) for the record.
@Suite struct FuzzTests {
    static let seed: UInt64 = 0x6b70_726f_6265   // "kprobe"
    static let budgetSeconds = 8.0
    static let maxIterations = 4000
    static let hangSeconds = 2.0

    /// Runs `body` on mutations of `base` until the budget is spent; returns (iterations, hangs).
    static func fuzz(_ name: String, base: [UInt8], seed: UInt64 = seed, _ body: ([UInt8]) -> Void) -> (runs: Int, hangs: Int) {
        var mutator = Mutator(seed: seed)
        let start = MonotonicClock.seconds
        var runs = 0, hangs = 0
        while runs < maxIterations, MonotonicClock.seconds - start < budgetSeconds {
            let input = mutator.mutate(base)
            let before = MonotonicClock.seconds
            body(input)
            if MonotonicClock.seconds - before > hangSeconds {
                hangs += 1
                print("fuzz: \(name): iteration \(runs) of seed \(seed) took \(MonotonicClock.seconds - before) s")
            }
            runs += 1
        }
        print("fuzz: \(name): \(runs) inputs, 0 crashes, \(hangs) hangs")
        return (runs, hangs)
    }

    /// The package root, from this file's path: ../shared is found relative to it.
    static let packageRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    static let kheadersModule = packageRoot + "/../shared/testkernel/modules/lib/modules/6.1.192-kheaders-test/kernel/kernel/kheaders.ko"

    /// A tar stream with what kheaders archives and attacks hold: directories, files, a symlink
    /// inside the tree, a hard link, long names.
    static func baseTar() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 1 << 20)
        var used = 0
        let writer = archive_write_new()
        defer { archive_write_free(writer) }
        archive_write_set_format_pax_restricted(writer)
        archive_write_set_bytes_in_last_block(writer, 1)
        try #require(archive_write_open_memory(writer, &out, out.count, &used) == ARCHIVE_OK)
        let members: [(String, mode_t, String?, String?, String)] = [
            ("include/", S_IFDIR, nil, nil, ""),
            ("include/linux/", S_IFDIR, nil, nil, ""),
            ("include/linux/kconfig.h", S_IFREG, nil, nil, "#define IS_ENABLED(x) 0\n"),
            ("include/generated/autoconf.h", S_IFREG, nil, nil, "#define CONFIG_X86 1\n"),
            ("include/linux/types.h", S_IFREG, nil, nil, String(repeating: "typedef int t;\n", count: 40)),
            ("include/alias.h", S_IFLNK, "linux/types.h", nil, ""),
            ("include/hard.h", S_IFREG, nil, "include/linux/types.h", ""),
            ("arch/x86/include/" + String(repeating: "d", count: 120) + "/deep.h", S_IFREG, nil, nil, "x"),
        ]
        for (path, type, symlink, hardlink, text) in members {
            let entry = archive_entry_new()
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, path)
            archive_entry_set_filetype(entry, UInt32(type))
            archive_entry_set_perm(entry, type == S_IFDIR ? 0o755 : 0o644)
            if let symlink { archive_entry_set_symlink(entry, symlink) }
            if let hardlink { archive_entry_set_hardlink(entry, hardlink) }
            let data = Array(text.utf8)
            archive_entry_set_size(entry, type == S_IFREG && hardlink == nil ? Int64(data.count) : 0)
            try #require(archive_write_header(writer, entry) == ARCHIVE_OK)
            if !data.isEmpty { _ = data.withUnsafeBytes { archive_write_data(writer, $0.baseAddress, $0.count) } }
        }
        archive_write_close(writer)
        return Array(out[0..<used])
    }

    /// Tar headers with their checksums recomputed, so that a mutation of a header field reaches
    /// the parser's and the extractor's checks instead of failing the checksum.
    static func fixingChecksums(_ tar: [UInt8]) -> [UInt8] {
        var bytes = tar
        var block = 0
        while block + 512 <= bytes.count {
            if bytes[(block + 257)..<(block + 262)].elementsEqual("ustar".utf8) {
                for index in 148..<156 { bytes[block + index] = UInt8(ascii: " ") }
                let sum = bytes[block..<(block + 512)].reduce(0) { $0 + Int($1) }
                let digits = Array(String(sum, radix: 8).utf8)
                let field = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 6 - digits.count)) + digits.suffix(6) + [0, UInt8(ascii: " ")]
                bytes.replaceSubrange((block + 148)..<(block + 156), with: field)
            }
            block += 512
        }
        return bytes
    }

    /// `bytes` as one xz stream.
    static func xz(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count + (64 << 10))
        var used = 0
        let writer = archive_write_new()
        defer { archive_write_free(writer) }
        archive_write_add_filter_xz(writer)
        archive_write_set_filter_option(writer, "xz", "compression-level", "0")
        archive_write_set_format_raw(writer)
        archive_write_set_bytes_in_last_block(writer, 1)
        guard archive_write_open_memory(writer, &out, out.count, &used) == ARCHIVE_OK else { return [] }
        let entry = archive_entry_new()
        archive_entry_set_pathname(entry, "data")
        archive_entry_set_filetype(entry, UInt32(Glibc.S_IFREG))
        archive_entry_set_size(entry, Int64(bytes.count))
        archive_write_header(writer, entry)
        archive_entry_free(entry)
        _ = bytes.withUnsafeBytes { archive_write_data(writer, $0.baseAddress, $0.count) }
        archive_write_close(writer)
        return Array(out[0..<used])
    }

    /// Unpacks into a fresh directory inside a private one and checks that nothing was written
    /// beside it (no escape) whatever the outcome: mutations of the tar stream (compressed after)
    /// reach the tar parser and the extractor's checks, mutations of the xz stream the decoder.
    @Test func archiveExtractor() throws {
        let tar = try Self.baseTar()
        let scratchPath = try makeScratch()
        defer { _ = try? ChildProcess.run(["/bin/rm", "-rf", scratchPath]) }
        let scratch = try FileDescriptor.openDirectory(scratchPath)
        let limits = ExtractionLimits(maxTotalBytes: 8 << 20, maxEntries: 2000)
        var escapes = 0, unpacked = 0
        func unpack(_ archive: [UInt8]) {
            guard mkdirat(scratch.rawValue, "out", 0o700) == 0, let out = try? FileDescriptor.openDirectory("out", relativeTo: scratch.rawValue) else {
                Issue.record("cannot make the extraction directory")
                return
            }
            if (try? SecureExtractor.extract(archive, archiveName: "fuzzed", into: out.rawValue, limits: limits, progress: nil,
                                                flushing: false)) != nil {
                unpacked += 1
            }
            if DirectoryListing.names(in: scratch.rawValue) != ["out"] { escapes += 1 }
            for name in DirectoryListing.names(in: scratch.rawValue) { TreeOps.remove(name, in: scratch.rawValue) }
        }
        let tarRuns = Self.fuzz("archive extractor, mutated tar", base: tar) { unpack(Self.xz(Self.fixingChecksums($0))) }
        let xzRuns = Self.fuzz("archive extractor, mutated xz", base: Self.xz(tar), seed: Self.seed + 3) { unpack($0) }
        print("fuzz: archive extractor: \(unpacked) inputs unpacked, \(escapes) escapes")
        #expect(tarRuns.hangs == 0 && xzRuns.hangs == 0)
        #expect(escapes == 0)
    }

    /// The kheaders archive inside a module (libelf over mutated section and symbol tables), and
    /// the BPF-object check over an ELF file made to look like one.
    @Test func elfReaders() throws {
        var results: [(runs: Int, hangs: Int)] = []
        if FileSystem.isRegularFile(Self.kheadersModule) {
            let module = try FileSystem.read(Self.kheadersModule)
            // The headers and tables are at the ends: mutate a copy without most of the archive.
            results.append(Self.fuzz("ELF kheaders reader", base: module) { mutated in
                var image = mutated
                _ = image.withUnsafeMutableBytes { try? ELFHeaders.find(in: $0, name: "fuzzed") }
            })
        }
        var object = try FileSystem.read("/bin/true")
        object[16] = UInt8(ET_REL); object[17] = 0
        object[18] = UInt8(EM_BPF); object[19] = 0
        results.append(Self.fuzz("BPF object check and ELF sections", base: object, seed: Self.seed + 1) { mutated in
            _ = ELFImage.bpfObjectProblem(mutated)
            var copy = mutated
            copy.withUnsafeMutableBytes { buffer in
                guard let image = ELFImage(memory: buffer) else { return }
                for section in image.sections {
                    _ = section.contents?.count
                    if section.header.sh_type == UInt32(SHT_SYMTAB) || section.header.sh_type == UInt32(SHT_DYNSYM) {
                        image.forEachSymbol(in: section) { _, _ in true }
                    }
                }
            }
        })
        #expect(results.allSatisfy { $0.hangs == 0 })
    }

    /// The worker protocol, both ways: a malformed message is an error, never a crash or a
    /// runaway allocation.
    @Test func workerProtocol() {
        let request = CompileRequest(
            sourcePath: "probe.c", source: "int x;\n", frontendTriple: "bpf", arguments: ["-O2", "-g", "-I/x"],
            virtualFiles: [VirtualFile(path: "/kprobe-run-virtual/a.h", contents: "#define A 1\n")])
        let response = WorkerProtocol.Response(status: 0, elf: Array(repeating: 0x7f, count: 300), diagnostics: "warning: x\n",
                                               dependencies: ["/a.h", "/b.h"], notes: ["built"])
        var decoded = 0
        let requests = Self.fuzz("worker protocol requests", base: WorkerProtocol.encode(request)) { mutated in
            if (try? WorkerProtocol.decodeRequest(mutated)) != nil { decoded += 1 }
        }
        let responses = Self.fuzz("worker protocol responses", base: WorkerProtocol.encode(response), seed: Self.seed + 2) { mutated in
            if (try? WorkerProtocol.decodeResponse(mutated)) != nil { decoded += 1 }
        }
        print("fuzz: worker protocol: \(decoded) mutated messages still decoded")
        #expect(requests.hangs == 0 && responses.hangs == 0)
    }

    private func makeScratch() throws -> String {
        var template = Array("/tmp/kprobe-run-fuzz-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw Errno.current }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
