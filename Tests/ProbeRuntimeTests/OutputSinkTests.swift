import Glibc
import Testing
@testable import ProbeRuntime

/// stdout to a pipe: what the reader has no room for waits in memory, in order, up to the limit.
@Suite struct OutputSinkTests {
    /// `count` numbered lines, as the sink receives them.
    private static func lines(_ count: Int) -> [String] {
        (0..<count).map { "{\"seq\":\($0),\"comm\":\"kprgen\",\"pad\":\"\(String(repeating: "x", count: 40))\"}" }
    }

    @Test func aPipeWithoutRoomDoesNotStopTheSession() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        // The test reads only when the sink has gone as far as it can without waiting.
        #expect(fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK) == 0)
        let sink = OutputSink(fd: fds[1])
        try #require(sink.deferring, "this kernel cannot write to a pipe without waiting (RWF_NOWAIT)")
        let expected = Self.lines(40_000)
        // 2.6 MiB into a 64 KiB pipe nobody reads: every send returns at once.
        for (index, line) in expected.enumerated() {
            sink.emit(line)
            if index % 100 == 99 { sink.send() }
        }
        sink.send()
        #expect(sink.waiting)
        #expect(sink.queuedBytes > 1 << 20)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        func drain() {
            while true {
                let n = read(fds[0], &buffer, buffer.count)
                guard n > 0 else { return }
                received += buffer[0..<n]
            }
        }
        // The reader makes room a bit at a time, as a slow `grep` would.
        while sink.waiting {
            drain()
            sink.send()
        }
        sink.emit("last")
        sink.flush()
        close(fds[1])
        drain()
        #expect(!sink.closed && sink.failure == nil)
        #expect(String(decoding: received, as: UTF8.self) == (expected + ["last"]).map { $0 + "\n" }.joined())
    }

    @Test func pastTheLimitAWriteWaitsForTheReader() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let limit = 1 << 20
        let sink = OutputSink(fd: fds[1], queueLimit: limit)
        try #require(sink.deferring, "this kernel cannot write to a pipe without waiting (RWF_NOWAIT)")
        let reader = PipeReader(fd: fds[0])
        var thread = pthread_t()
        let context = Unmanaged.passRetained(reader)
        #expect(pthread_create(&thread, nil, { context in
            Unmanaged<PipeReader>.fromOpaque(context!).takeRetainedValue().readAll()
            return nil
        }, context.toOpaque()) == 0)
        let expected = Self.lines(100_000)
        var largest = 0
        for (index, line) in expected.enumerated() {
            sink.emit(line)
            if index % 1000 == 999 {
                sink.send()
                largest = max(largest, sink.queuedBytes)
            }
        }
        sink.flush()
        close(fds[1])
        pthread_join(thread, nil)
        close(fds[0])
        #expect(largest <= limit)
        #expect(String(decoding: reader.bytes, as: UTF8.self) == expected.map { $0 + "\n" }.joined())
    }

    @Test func aReaderThatLeavesEndsTheOutput() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        // As kprobe-run does: a reader that has gone is EPIPE, not a signal.
        signal(SIGPIPE, SIG_IGN)
        let sink = OutputSink(fd: fds[1])
        for line in Self.lines(20_000) { sink.emit(line) }
        sink.send()
        close(fds[0])
        sink.emit("after")
        sink.flush()
        close(fds[1])
        #expect(sink.closed && !sink.waiting)
        #expect(sink.failure == nil)
    }

    /// Reads a pipe to its end on a thread of its own (handed to that thread alone until joined).
    private final class PipeReader: @unchecked Sendable {
        let fd: Int32
        var bytes: [UInt8] = []
        init(fd: Int32) { self.fd = fd }

        func readAll() {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return }
                bytes += buffer[0..<n]
            }
        }
    }
}
