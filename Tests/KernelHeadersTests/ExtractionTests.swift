import Glibc
import KernelHeaders
import KprobeSupport
import Testing
import TestSupport

/// Hostile and broken archives: each must fail with exit 4 (or be sanitized) and leave nothing
/// outside the target, neither through `headers extract` nor through the cache.
@Suite struct ExtractionTests {
    /// Extracts `members` both ways and expects a refusal naming `mentioning`.
    private func expectRefused(_ members: [Member], mentioning: String, compression: Compression = .xz,
                               limits: ExtractionLimits = .standard) throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/in.tar.xz"
        writeArchive(members, to: archive, compression: compression)
        try expectRefused(archive, in: scratch, mentioning: mentioning, limits: limits)
    }

    /// Extracts `archive`, the only file in `scratch`, both ways and expects a refusal naming
    /// `mentioning`.
    private func expectRefused(_ archive: String, in scratch: ScratchDirectory, mentioning: String,
                               limits: ExtractionLimits = .standard) throws {
        let direct = #expect(throws: HeaderError.self) {
            try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/out", limits: limits)
        }
        #expect(direct?.kind == .noKernelHeaders)
        #expect(direct?.message.contains(mentioning) == true, "\(direct?.message ?? "")")
        #expect(scratch.names() == ["in.tar.xz"], "left behind: \(scratch.names())")

        let headers = HeaderLocator(options: options(scratch, source: archive), limits: limits)
        let cached = #expect(throws: HeaderError.self) { try headers.resolve() }
        #expect(cached?.kind == .noKernelHeaders)
        #expect(Set(scratch.names()).isSubset(of: ["cache", "in.tar.xz"]), "left behind: \(scratch.names())")
        #expect(scratch.names("cache/headers").allSatisfy { $0.hasPrefix(".") && !$0.hasPrefix(".tmp") })
    }

    @Test func normalArchiveUnpacks() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/in.tar.xz"
        writeArchive([
            .dir("./"), .dir("./include/"), .dir("./include/linux/"),
            .file("./include/linux/kconfig.h", "#define X 1\n"),
            .file("include/linux/other.h", "other\n", perm: 0o444),
            .link("./include/alias.h", to: "linux/kconfig.h"),
            Member(path: "include/hard.h", hardlink: "include/linux/kconfig.h"),
        ], to: archive)
        try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/out")
        #expect(readFile(scratch.path + "/out/include/linux/kconfig.h") == Array("#define X 1\n".utf8))
        #expect(readFile(scratch.path + "/out/include/alias.h") == Array("#define X 1\n".utf8))
        #expect(readFile(scratch.path + "/out/include/hard.h") == Array("#define X 1\n".utf8))
        #expect(lstatMode(scratch.path + "/out/include/alias.h").map { $0 & S_IFMT } == S_IFLNK)
        #expect(scratch.names() == ["in.tar.xz", "out"])
    }

    @Test func extractsIntoAnEmptyDirectoryButNotAFullOne() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/in.tar.xz"
        writeArchive([.file("a.h")], to: archive)
        mkdir(scratch.path + "/empty", 0o755)
        try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/empty")
        #expect(FileSystem.isRegularFile(scratch.path + "/empty/a.h"))
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/empty")
        }
        #expect(error?.kind == .usage)
    }

    @Test func symlinkInsideIsKept() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/in.tar.xz"
        // As in kheaders: include/dt-bindings/input/linux-event-codes.h -> ../../uapi/...
        writeArchive([
            .file("include/uapi/linux/input-event-codes.h", "codes"),
            .link("include/dt-bindings/input/linux-event-codes.h", to: "../../uapi/linux/input-event-codes.h"),
            .link("include/dir-link", to: "uapi/linux"),
            .link("include/via-dir-link.h", to: "dir-link/input-event-codes.h"),
        ], to: archive)
        try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/out")
        #expect(readFile(scratch.path + "/out/include/dt-bindings/input/linux-event-codes.h") == Array("codes".utf8))
        #expect(readFile(scratch.path + "/out/include/via-dir-link.h") == Array("codes".utf8))
    }

    @Test func escapingSymlinkIsRefused() throws {
        try expectRefused([.file("a.h"), .link("include/evil.h", to: "../../outside")], mentioning: "include/evil.h")
    }

    @Test func absoluteSymlinkIsRefused() throws {
        try expectRefused([.link("passwd.h", to: "/etc/passwd")], mentioning: "passwd.h")
    }

    @Test func symlinkEscapingThroughAnotherSymlinkIsRefused() throws {
        // a/b/up -> ../.. stays inside; through it, top -> a/b/up/.. climbs out, although the
        // path read as text (a/b/up/.. = a/b) looks inside.
        try expectRefused([
            .dir("a/b/"),
            .link("a/b/up", to: "../.."),
            .link("top", to: "a/b/up/.."),
        ], mentioning: "top")
    }

    @Test func writingThroughAnArchiveSymlinkIsRefused() throws {
        try expectRefused([
            .link("dir", to: "."),
            .file("dir/x.h"),
        ], mentioning: "dir")
    }

    @Test func dotDotPathIsRefused() throws {
        try expectRefused([.file("include/a.h"), .file("include/../../escape.h")], mentioning: "include/../../escape.h")
    }

    @Test func absolutePathIsRefused() throws {
        let scratch = try ScratchDirectory()
        try expectRefused([.file(scratch.path + "/absolute.h")], mentioning: "absolute path")
        #expect(!FileSystem.exists(scratch.path + "/absolute.h"))
    }

    @Test func deviceNodeIsRefused() throws {
        try expectRefused([Member(path: "dev/null", type: S_IFCHR)], mentioning: "device node")
    }

    @Test func fifoIsRefused() throws {
        try expectRefused([Member(path: "pipe", type: S_IFIFO)], mentioning: "fifo")
    }

    @Test func hardlinkOutsideIsRefused() throws {
        try expectRefused([.file("a.h"), Member(path: "b.h", hardlink: "../outside")], mentioning: "b.h")
    }

    @Test func setuidIsStripped() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/in.tar.xz"
        writeArchive([.file("tool", "#!/bin/sh\n", perm: 0o6777), .dir("sticky/")], to: archive)
        try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/out")
        let mode = try #require(lstatMode(scratch.path + "/out/tool"))
        #expect(mode & (S_ISUID | S_ISGID | S_ISVTX) == 0)
        #expect(mode & 0o022 == 0)
    }

    @Test func truncatedArchiveIsRefused() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.path + "/full.tar.xz"
        var payload: [UInt8] = []
        for i in 0..<200_000 { payload.append(UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13)) }
        writeArchive([Member(path: "big.bin", data: payload), .file("after.h")], to: archive)
        let bytes = try #require(readFile(archive))
        let truncated = scratch.path + "/cut.tar.xz"
        writeFile(truncated, Array(bytes.prefix(bytes.count / 2)))
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator.extractArchive(from: truncated, to: scratch.path + "/out")
        }
        #expect(error?.kind == .noKernelHeaders)
        #expect(error?.message.contains("truncated or corrupt") == true, "\(error?.message ?? "")")
        #expect(!scratch.names().contains { $0.contains("out") })
    }

    @Test func corruptStreamMidArchiveIsRefused() throws {
        let scratch = try ScratchDirectory()
        // Incompressible, so that xz stores it as is and only its check can notice the damage,
        // long after the first members were handed to the tar reader.
        var payload: [UInt8] = []
        var state: UInt32 = 1
        for _ in 0..<(2 << 20) {
            state = state &* 1_664_525 &+ 1_013_904_223
            payload.append(UInt8(truncatingIfNeeded: state >> 24))
        }
        let archive = scratch.path + "/in.tar.xz"
        writeArchive([.file("first.h"), Member(path: "big.bin", data: payload), .file("after.h")], to: archive)
        var bytes = try #require(readFile(archive))
        for i in (bytes.count * 3 / 5)..<(bytes.count * 3 / 5 + 64) { bytes[i] ^= 0x55 }
        writeFile(archive, bytes)
        try expectRefused(archive, in: scratch, mentioning: "truncated or corrupt")
    }

    @Test func streamLargerThanTheLimitsAllowIsRefused() throws {
        let scratch = try ScratchDirectory()
        // A small tar followed by zeros that compress to almost nothing: the tar reader stops at
        // the first zero blocks, but the stream goes on.
        writeArchive([.file("a.h")], to: scratch.path + "/plain.tar", compression: .none)
        let tar = try #require(readFile(scratch.path + "/plain.tar"))
        unlink(scratch.path + "/plain.tar")
        let archive = scratch.path + "/in.tar.xz"
        writeCompressed(tar + [UInt8](repeating: 0, count: 8 << 20), to: archive)
        try expectRefused(archive, in: scratch, mentioning: "decompresses to more than",
                          limits: ExtractionLimits(maxTotalBytes: 4096, maxEntries: 10))
        // Within the limits the same padding is harmless.
        try HeaderLocator.extractArchive(from: archive, to: scratch.path + "/out")
        #expect(FileSystem.isRegularFile(scratch.path + "/out/a.h"))
    }

    @Test func oversizedArchiveIsRefused() throws {
        let big = Member(path: "big.h", data: [UInt8](repeating: 0x41, count: 5000))
        try expectRefused([.file("a.h"), big], mentioning: "limit of 4096 bytes",
                          limits: ExtractionLimits(maxTotalBytes: 4096, maxEntries: 100))
        try expectRefused((0..<20).map { .file("f\($0).h") }, mentioning: "limit of 10 members",
                          limits: ExtractionLimits(maxTotalBytes: 1 << 20, maxEntries: 10))
    }

    @Test func uncompressedTarIsRefused() throws {
        try expectRefused([.file("a.h")], mentioning: "not", compression: .none)
    }

    @Test func gzipTarIsRefused() throws {
        try expectRefused([.file("a.h")], mentioning: "compressed", compression: .gzip)
    }

    @Test func textFileIsRefused() throws {
        let scratch = try ScratchDirectory()
        writeFile(scratch.path + "/notes.txt", Array("hello\n".utf8))
        let error = #expect(throws: HeaderError.self) {
            try HeaderLocator.extractArchive(from: scratch.path + "/notes.txt", to: scratch.path + "/out")
        }
        #expect(error?.kind == .noKernelHeaders)
        #expect(scratch.names() == ["notes.txt"])
    }
}
