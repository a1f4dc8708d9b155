import CLibBPF
import Glibc

/// Collects libbpf's warnings and info messages (debug chatter is dropped) so that a failed load can show the end of
/// the verifier log instead of libbpf printing everything to stderr as it goes.
///
/// libbpf has one process-wide print callback, so the log is process-wide too; only the last
/// `capacity` bytes are kept, which always include the end of the latest verifier log.
final class LibbpfLog: @unchecked Sendable {
    static let shared = LibbpfLog()

    private var lock = pthread_mutex_t()
    private var text: [UInt8] = []
    private let capacity = 1 << 20

    private init() {
        pthread_mutex_init(&lock, nil)
    }

    /// Routes libbpf's output here (idempotent) and forgets earlier messages.
    func install() {
        // A C function pointer cannot capture anything, hence the singleton.
        kprobe_run_libbpf_set_sink { message in
            if let message { LibbpfLog.shared.append(message) }
        }
        clear()
    }

    func clear() {
        pthread_mutex_lock(&lock)
        text.removeAll(keepingCapacity: true)
        pthread_mutex_unlock(&lock)
    }

    func append(_ message: UnsafePointer<CChar>) {
        let count = strlen(message)
        pthread_mutex_lock(&lock)
        message.withMemoryRebound(to: UInt8.self, capacity: count) {
            text.append(contentsOf: UnsafeBufferPointer(start: $0, count: count))
        }
        if text.count > capacity { text.removeFirst(text.count - capacity) }
        pthread_mutex_unlock(&lock)
    }

    var contents: String {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return String(decoding: text, as: UTF8.self)
    }
}
