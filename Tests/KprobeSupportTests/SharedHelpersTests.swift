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

    @Test func subprocessReportsStatusAndCapturedStream() throws {
        let printed = try Subprocess.run("/bin/sh", arguments: ["sh", "-c", "echo out; echo err >&2; exit 3"], capture: .standardError)
        #expect(printed.status == 3)
        #expect(printed.output == Array("err\n".utf8))
        let limited = try Subprocess.run("/bin/sh", arguments: ["sh", "-c", "yes | head -c 100000"], capture: .standardOutput, limit: 10)
        #expect(limited.status == 0)
        #expect(limited.output.count == 10)
        let killed = try Subprocess.run("/bin/sh", arguments: ["sh", "-c", "kill -9 $$"], capture: .standardOutput)
        #expect(killed.status == 128 + SIGKILL)
        #expect(throws: Errno.self) { try Subprocess.run("/nonexistent/tool", arguments: ["tool"], capture: .standardOutput) }
    }

    @Test func monotonicClockMovesForward() {
        let start = MonotonicClock.now
        let seconds = MonotonicClock.seconds
        #expect(MonotonicClock.milliseconds(since: start) >= 0)
        #expect(MonotonicClock.seconds >= seconds)
    }
}
