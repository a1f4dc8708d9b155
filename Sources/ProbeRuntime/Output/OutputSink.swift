import Glibc
import KprobeSupport

/// Line-oriented stdout: lines collect in a buffer that is written with write(2) at every poll
/// wake-up (or when large), so `| head` and scripts see records promptly without a syscall per
/// record. A closed pipe ends the run instead of killing the process (SIGPIPE is ignored).
final class OutputSink {
    private let fd: Int32
    private var buffer: [UInt8] = []
    /// Set once the reader has gone away (EPIPE); the session then stops cleanly.
    private(set) var closed = false
    /// A write error other than EPIPE, reported after everything is detached.
    private(set) var failure: Errno?

    init(fd: Int32 = 1) {
        self.fd = fd
        buffer.reserveCapacity(1 << 16)
    }

    func emit(_ line: String) {
        guard !closed else { return }
        buffer.append(contentsOf: line.utf8)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { flush() }
    }

    /// One line written by `body` straight into the buffer (no String); nothing when `body`
    /// writes nothing. When `body` returns false its bytes are dropped and so is the line.
    func emit(_ body: (inout [UInt8]) -> Bool) -> Bool {
        guard !closed else { return true }
        let start = buffer.count
        guard body(&buffer) else {
            buffer.removeSubrange(start...)
            return false
        }
        if buffer.count > start { buffer.append(UInt8(ascii: "\n")) }
        if buffer.count >= 1 << 16 { flush() }
        return true
    }

    func flush() {
        guard !closed, !buffer.isEmpty else {
            buffer.removeAll(keepingCapacity: true)
            return
        }
        do {
            try FileSystem.writeAll(buffer, to: fd)
        } catch {
            if error.rawValue != EPIPE { failure = error }
            closed = true
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Diagnostics that belong on stderr whatever the verbosity (lost events).
enum StandardError {
    static func write(_ line: String) {
        try? FileSystem.writeAll(Array((line + "\n").utf8), to: 2)
    }
}
