import CLibBPF
import Glibc
import KprobeSupport

/// Line-oriented stdout: lines collect in a buffer that is handed to write(2) (`send`) before the
/// poll loop waits or naps, or when 256 KiB have collected, so `| head` and scripts see records promptly
/// without a syscall per record, and a stream of records leaves in large writes. A closed pipe
/// ends the run instead of killing the process (SIGPIPE is ignored).
///
/// To a pipe or socket, writes never wait for the reader (pwritev2 with RWF_NOWAIT, so the shared
/// file description keeps its flags): what the reader has no room for yet waits here, in order,
/// up to `queueLimit` bytes, and the session keeps reading the kernel's buffers meanwhile. A
/// reader that stops for a moment (a `grep` that loses the CPU on a busy machine) then costs
/// memory instead of records the kernel drops once its 256 KiB buffer is full. Past the limit a
/// write waits, as it always does to files and terminals: output is never dropped, and memory
/// stays bounded.
final class OutputSink {
    let fd: Int32
    /// The chunk lines are written into. Raw storage, so that a record plan writes into it
    /// without bounds or uniqueness checks.
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// Filled chunks the reader has had no room for yet, oldest first; the first has had
    /// `queueHead` bytes written.
    private var queue: [Chunk] = []
    private var queueHead = 0
    /// Bytes in `queue` not yet written.
    private(set) var queuedBytes = 0
    /// Chunks kept for reuse (their pages are already faulted in).
    private var spares: [Chunk] = []
    /// The fd is a pipe or socket and accepts RWF_NOWAIT writes.
    private(set) var deferring: Bool
    private let queueLimit: Int
    /// Set once the reader has gone away (EPIPE); the session then stops cleanly.
    private(set) var closed = false
    /// A write error other than EPIPE, reported after everything is detached.
    private(set) var failure: Errno?

    private struct Chunk {
        let storage: UnsafeMutablePointer<UInt8>
        let capacity: Int
        var count: Int
    }

    /// Written once this much has collected: large writes, few enough to keep a pipe flowing.
    private static let flushSize = 1 << 18
    /// 32 MiB: a third of a second of JSON lines at a million records a second.
    static let defaultQueueLimit = 32 << 20

    init(fd: Int32 = 1, queueLimit: Int = OutputSink.defaultQueueLimit) {
        self.fd = fd
        self.queueLimit = queueLimit
        capacity = 2 * OutputSink.flushSize
        storage = .allocate(capacity: capacity)
        var st = stat()
        let type = fstat(fd, &st) == 0 ? st.st_mode & S_IFMT : 0
        deferring = type == S_IFIFO || type == S_IFSOCK
    }

    deinit {
        storage.deallocate()
        for chunk in queue + spares { chunk.storage.deallocate() }
    }

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
            send(whole: true)
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
        if count >= OutputSink.flushSize { send() }
        return true
    }

    /// Output is waiting for the reader to make room (poll stdout for POLLOUT).
    var waiting: Bool { queuedBytes > 0 }

    /// The descriptor to poll for room: the fd while output waits, else -1 (not polled: a pipe
    /// whose reader has gone would report POLLERR at every turn).
    var pollFD: Int32 { waiting ? fd : -1 }

    /// Hands what has collected to the reader: to a pipe or socket as much as it has room for
    /// now, the rest queued (waiting only while more than `queueLimit` bytes are queued);
    /// elsewhere all of it. Lines collected behind a queue stay in their chunk until it is full
    /// (many small chunks would hold more memory than bytes) or `whole` is set.
    func send(whole: Bool = false) {
        guard !closed else { return }
        guard deferring else {
            flush()
            return
        }
        writeQueue(downTo: nil)
        if queue.isEmpty, count > 0 {
            let written = writeNow(storage, count)
            if written < count {
                queueChunk(written: written)
            } else {
                count = 0
            }
        } else if count > 0, whole || count >= OutputSink.flushSize {
            queueChunk(written: 0)
        }
        if queuedBytes > queueLimit { writeQueue(downTo: queueLimit) }
    }

    /// Writes everything, waiting for the reader as long as it takes.
    func flush() {
        writeQueue(downTo: 0)
        defer { count = 0 }
        guard !closed, count > 0 else { return }
        write(storage, count)
    }

    /// The chunk being filled joins the queue (its first `written` bytes are out); lines go on
    /// in a fresh one.
    private func queueChunk(written: Int) {
        queue.append(Chunk(storage: storage, capacity: capacity, count: count))
        if queue.count == 1 { queueHead = written }
        queuedBytes += count - written
        if let spare = spares.popLast() {
            storage = spare.storage
            capacity = spare.capacity
        } else {
            capacity = 2 * OutputSink.flushSize
            storage = .allocate(capacity: capacity)
        }
        count = 0
    }

    /// Writes queued chunks in order: with `target` nil as far as the reader has room now,
    /// otherwise waiting for it until at most `target` bytes are queued.
    private func writeQueue(downTo target: Int?) {
        while let first = queue.first, !closed {
            if let target, queuedBytes <= target { break }
            let start = first.storage + queueHead, left = first.count - queueHead
            let written: Int
            if target == nil {
                written = writeNow(start, left)
            } else {
                write(start, left)
                written = left
            }
            queuedBytes -= written
            queueHead += written
            if queueHead < first.count { break }
            queue.removeFirst()
            queueHead = 0
            recycle(first)
        }
        if closed {
            for chunk in queue { chunk.storage.deallocate() }
            queue.removeAll()
            queuedBytes = 0
        }
    }

    /// Writes what the reader has room for now; returns how much.
    private func writeNow(_ bytes: UnsafeMutablePointer<UInt8>, _ length: Int) -> Int {
        var offset = 0
        while offset < length, deferring, !closed {
            let n = kprobe_run_write_nowait(fd, bytes + offset, length - offset)
            if n >= 0 {
                offset += n
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: return offset
            case EOPNOTSUPP, EINVAL, ENOSYS:
                // This kernel cannot write to this file without waiting: write as to a file.
                deferring = false
            default: fail(Errno.current)
            }
        }
        if offset < length, !closed {
            write(bytes + offset, length - offset)
            return length
        }
        return offset
    }

    private func write(_ bytes: UnsafeMutablePointer<UInt8>, _ length: Int) {
        guard !closed else { return }
        do {
            try FileSystem.writeAll(UnsafeRawBufferPointer(start: bytes, count: length), to: fd)
        } catch {
            fail(error)
        }
    }

    private func fail(_ error: Errno) {
        if error.rawValue != EPIPE { failure = error }
        closed = true
    }

    private func recycle(_ chunk: Chunk) {
        if spares.count < 2, chunk.capacity == 2 * OutputSink.flushSize {
            spares.append(chunk)
        } else {
            chunk.storage.deallocate()
        }
    }
}

/// Diagnostics that belong on stderr whatever the verbosity (lost events).
enum StandardError {
    static func write(_ line: String) {
        try? FileSystem.writeAll(Array((line + "\n").utf8), to: 2)
    }
}
