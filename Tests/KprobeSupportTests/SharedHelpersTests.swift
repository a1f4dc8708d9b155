import Testing
import Glibc
import KprobeSupport

@Suite struct SharedHelpersTests {
    @Test func trimmingSpacesDropsPaddingOnly() {
        #expect(" \t0-3\r\n".trimmingSpaces == "0-3")
        #expect("  a b  "[...].trimmingSpaces == "a b")
        #expect(" \n\t ".trimmingSpaces.isEmpty)
        #expect("".trimmingSpaces.isEmpty)
        #expect("\u{00A0}x\u{00A0}".trimmingSpaces == "\u{00A0}x\u{00A0}")
    }

    @Test func writeAllAndReadAllRoundTrip() throws {
        var template = Array("/tmp/kprobe-run-io-test-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        try #require(fd >= 0)
        defer { close(fd) }
        unlink(String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let bytes = (0..<(1 << 18)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try FileSystem.writeAll(bytes, to: fd)
        try #require(lseek(fd, 0, SEEK_SET) == 0)
        #expect(try FileSystem.readAll(fd) == bytes)
    }

    @Test func childProcessReportsStatusAndKeepsWhatItIsAsked() throws {
        let printed = try ChildProcess.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], stdout: .none, stderr: .all)
        #expect(printed.status == .exited(3))
        #expect(printed.stderr == Array("err\n".utf8))
        #expect(printed.stdout.isEmpty)
        let limited = try ChildProcess.run(["/bin/sh", "-c", "yes | head -c 100000"], stdout: .head(10))
        #expect(limited.status.succeeded)
        #expect(limited.stdout.count == 10)
        let tail = try ChildProcess.run(["/bin/sh", "-c", "seq 1 20000 >&2"], stdout: .none, stderr: .tail(6))
        #expect(tail.stderr == Array("20000\n".utf8))
        let killed = try ChildProcess.run(["/bin/sh", "-c", "kill -9 $$"])
        #expect(killed.status == .signaled(SIGKILL))
        #expect(killed.status.code == 128 + SIGKILL)
        #expect(throws: Errno.self) { try ChildProcess.run(["/nonexistent/tool"]) }
    }

    @Test func childProcessFeedsInputLargerThanASocketBuffer() throws {
        let input = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let echoed = try ChildProcess.run(["/bin/cat"], input: input)
        #expect(echoed.status.succeeded)
        #expect(echoed.stdout == input)
        // A child that reads nothing: the write side gives up without SIGPIPE.
        let ignoring = try ChildProcess.run(["/bin/true"], input: input)
        #expect(ignoring.status.succeeded)
    }

    @Test func exitStatusDecodesWaitStatuses() {
        #expect(ExitStatus(waitStatus: 3 << 8) == .exited(3))
        #expect(ExitStatus(waitStatus: 2) == .signaled(2))
        #expect(ExitStatus(waitStatus: 2).code == 130)
    }

    @Test func boundedReadsStopAtTheLimit() throws {
        #expect(throws: Errno(EFBIG)) { try FileSystem.read("/dev/zero", limit: 1 << 20) }
        #expect(try FileSystem.read("/proc/self/stat", limit: 1 << 20).count > 0)
    }

    @Test func atomicWriterLeavesNoTemporaryAndNamesItsWriter() throws {
        let directory = "/tmp/kprobe-run-atomic-\(getpid())"
        mkdir(directory, 0o700)
        defer { _ = try? ChildProcess.run(["/bin/rm", "-rf", directory]) }
        try FileSystem.writeAtomically(Array("one".utf8), to: directory + "/file")
        try FileSystem.writeAtomically(Array("two".utf8), to: directory + "/file")
        #expect(try FileSystem.readString(directory + "/file") == "two")
        let fd = try FileDescriptor.openDirectory(directory)
        #expect(DirectoryListing.names(in: fd.rawValue) == ["file"])
        let temporary = AtomicFile.temporaryName(for: "x.pch")
        #expect(AtomicFile.writer(ofTemporary: temporary) == getpid())
        #expect(!AtomicFile.isLeftover(temporary))
        // A pid that cannot exist (above pid_max) stands for a writer that died.
        let dead = ".x.pch.tmp-2147483647-abc"
        #expect(AtomicFile.isLeftover(dead))
        try FileSystem.writeAtomically([], to: directory + "/" + dead)
        #expect(AtomicFile.removeLeftovers(in: fd.rawValue) == [dead])
    }

    @Test func fileLockExcludesASecondHolder() throws {
        let directory = "/tmp/kprobe-run-lock-\(getpid())"
        mkdir(directory, 0o700)
        defer { _ = try? ChildProcess.run(["/bin/rm", "-rf", directory]) }
        let lock = try FileLock(directory + "/.lock", relativeTo: AT_FDCWD)
        defer { lock.held() }
        let busy = try ChildProcess.run(["/usr/bin/flock", "-n", directory + "/.lock", "true"])
        #expect(busy.status == .exited(1))
    }

    @Test func kallsymsLinesParse() {
        let text = Array("ffffffff81000000 T _stext\nffffffffc0000000 t helper\t[mod]\nbad line\n".utf8)
        var seen: [String] = []
        Kallsyms.forEach(in: text[...]) { symbol in
            seen.append("\(String(symbol.address, radix: 16)) \(Character(UnicodeScalar(symbol.type))) \(String(decoding: symbol.name, as: UTF8.self)) \(symbol.module.map { String(decoding: $0, as: UTF8.self) } ?? "-")")
            return true
        }
        #expect(seen == ["ffffffff81000000 T _stext -", "ffffffffc0000000 t helper mod"])
        #expect(Kallsyms.contains("_stext") || !FileSystem.exists(Kallsyms.path))
        #expect(!Kallsyms.contains("kprobe_run_no_such_symbol_x") || !FileSystem.isRegularFile(Kallsyms.path))
    }

    @Test func elfImageListsSectionsAndSymbols() throws {
        let fd = try FileDescriptor.open("/bin/sh", O_RDONLY)
        guard let image = ELFImage(descriptor: fd.rawValue) else {
            Issue.record("/bin/sh is not ELF to libelf")
            return
        }
        let names = image.sections.compactMap { $0.name }
        #expect(names.contains(".text"))
        let dynsym = try #require(image.sections.first { $0.name == ".dynsym" })
        var count = 0
        image.forEachSymbol(in: dynsym) { _, _ in
            count += 1
            return true
        }
        #expect(count > 0)
        var notELF = Array("not an elf file".utf8)
        #expect(notELF.withUnsafeMutableBytes { ELFImage(memory: $0) != nil } == false)
    }

    @Test func monotonicClockMovesForward() {
        let start = MonotonicClock.now
        let seconds = MonotonicClock.seconds
        #expect(MonotonicClock.milliseconds(since: start) >= 0)
        #expect(MonotonicClock.seconds >= seconds)
    }
}
