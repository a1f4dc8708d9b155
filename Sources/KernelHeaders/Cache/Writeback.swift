import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Writes a cache entry's files back to disk while the rest of the tree is still being
/// unpacked, so that the one `syncfs` that makes the entry durable finds little left to write.
///
/// Without it the disk sits idle for the whole unpack (decompression and ~6,400 creations) and
/// the final flush then writes everything, waiting, on the critical path. A thread of its own
/// calls `syncfs` on the tree each time another `batchBytes` have been written, until the
/// unpack is done. syncfs hands the writing to the kernel's flusher, which writes many files'
/// pages in one batch (merged requests); starting each file's writeback by itself
/// (`sync_file_range`, tried here) issued ~6,400 small requests and cost more CPU than it saved.
///
/// Nothing here is a durability guarantee: that stays the last `syncfs`, after every file and
/// the MANIFEST, before the entry is renamed into place. The thread is created by the unpacking
/// thread and so inherits its nice value (the background writer of a first run stays behind
/// the compile); it keeps the object alive until `finish`, which its owner (`TreeWriter`) calls.
///
/// `@unchecked Sendable`: the counters, `finishing` and `waiting` are read and written with `mutex`
/// held; the thread id only by the owner.
final class Writeback: @unchecked Sendable {
    /// Bytes written between two flushes: about 25 flushes for the test kernel's 25 MiB (each
    /// one waits for a journal commit, and on flash for a cache flush).
    static let batchBytes = 1 << 20

    /// A descriptor of its own for the tree: syncfs reports a writeback error once per open
    /// file (since Linux 5.8), so flushing through the owner's would hide an error from the
    /// owner's last flush, which decides whether the entry is kept.
    private let root: FileDescriptor
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let changed: UnsafeMutablePointer<pthread_cond_t>
    /// Bytes written so far, each file rounded up to a page (a small file costs a page too).
    private var written = 0
    /// `written` when the thread last started a flush.
    private var flushed = 0
    private var finishing = false
    /// The thread sleeps on `changed`: only then does `wrote` need to wake it.
    private var waiting = false
    private var thread: pthread_t?
    /// Flushes made so far.
    private var flushCount = 0

    /// Starts the thread for the tree open at `rootFD`; nil if it cannot (the final flush then
    /// does all the writing).
    init?(flushing rootFD: Int32) {
        guard let root = try? FileDescriptor.openDirectory(".", relativeTo: rootFD) else { return nil }
        self.root = root
        mutex = .allocate(capacity: 1)
        changed = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        var id = pthread_t()
        let context = Unmanaged.passRetained(self)
        let status = pthread_create(&id, nil, { context in
            Unmanaged<Writeback>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            return nil
        }
        thread = id
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// A file of `size` bytes was written below the root.
    func wrote(_ size: Int) {
        pthread_mutex_lock(mutex)
        written += (size + 4095) & ~4095
        let wake = waiting && written - flushed >= Self.batchBytes
        pthread_mutex_unlock(mutex)
        if wake { pthread_cond_signal(changed) }
    }

    /// How many times the thread has flushed the tree.
    var flushes: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return flushCount
    }

    /// Stops the thread, waiting for a flush under way. Safe to call more than once.
    func finish() {
        guard let id = thread else { return }
        pthread_mutex_lock(mutex)
        finishing = true
        pthread_cond_signal(changed)
        pthread_mutex_unlock(mutex)
        pthread_join(id, nil)
        thread = nil
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while written - flushed < Self.batchBytes, !finishing {
                waiting = true
                pthread_cond_wait(changed, mutex)
                waiting = false
            }
            // The owner flushes once more anyway, with the MANIFEST.
            if finishing { break }
            flushed = written
            flushCount += 1
            pthread_mutex_unlock(mutex)
            // An error here only means the final flush meets it again and reports it.
            _ = kprobe_run_syncfs(root.rawValue)
            pthread_mutex_lock(mutex)
        }
        pthread_mutex_unlock(mutex)
    }
}
