import Glibc
import KprobeSupport

/// Line-oriented stdout: lines collect in a buffer that is written with write(2) at every poll
/// wake-up (or when 256 KiB have collected), so `| head` and scripts see records promptly without
/// a syscall per record, and a stream of records leaves in large writes. A closed pipe ends the
/// run instead of killing the process (SIGPIPE is ignored).
final class OutputSink {
    private let fd: Int32
    /// Raw storage, so that a record plan writes into it without bounds or uniqueness checks.
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// Set once the reader has gone away (EPIPE); the session then stops cleanly.
    private(set) var closed = false
    /// A write error other than EPIPE, reported after everything is detached.
    private(set) var failure: Errno?

    /// Written once this much has collected: large writes, few enough to keep a pipe flowing.
    private static let flushSize = 1 << 18

    init(fd: Int32 = 1) {
        self.fd = fd
        capacity = 2 * OutputSink.flushSize
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    func emit(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            _ = emit(maxLength: bytes.count) { out in
                out.update(from: bytes.baseAddress!, count: bytes.count)
                return out + bytes.count
            }
        }
    }

    /// One line of at most `maxLength` bytes written by `body` straight into the buffer; `body`
    /// returns where it ended, or nil to drop the line (and `emit` returns false).
    func emit(maxLength: Int, _ body: (UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8>?) -> Bool {
        guard !closed else { return true }
        if count + maxLength + 1 > capacity {
            flush()
            if maxLength + 1 > capacity {
                storage.deallocate()
                capacity = maxLength + 1
                storage = .allocate(capacity: capacity)
            }
        }
        let start = storage + count
        guard let end = body(start) else { return false }
        end.pointee = UInt8(ascii: "\n")
        count = end + 1 - storage
        if count >= OutputSink.flushSize { flush() }
        return true
    }

    func flush() {
        defer { count = 0 }
        guard !closed, count > 0 else { return }
        do {
            try FileSystem.writeAll(UnsafeRawBufferPointer(start: storage, count: count), to: fd)
        } catch {
            if error.rawValue != EPIPE { failure = error }
            closed = true
        }
    }
}

/// Diagnostics that belong on stderr whatever the verbosity (lost events).
enum StandardError {
    static func write(_ line: String) {
        try? FileSystem.writeAll(Array((line + "\n").utf8), to: 2)
    }
}
