import CLibELF
import KprobeSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A cache entry being written on a thread of its own while the run goes on: the first run
/// compiles from the decompressed archive in memory (`image`, a memfd the compiler worker maps)
/// instead of waiting for ~6,400 files to be created and flushed.
///
/// The writer holds `headers/.lock` until the entry is complete (files, MANIFEST, one syncfs,
/// rename, directory fsync), exactly as a synchronous unpack does, so every guarantee of the
/// cache holds: a concurrent run waits for the lock and then finds the entry, an interrupted
/// write leaves a temporary directory that the next unpack removes, and nothing is used without
/// its MANIFEST. The process does not exit before the writer has finished (`atexit`).
///
/// The run lets go of the image once the compile is done (`releaseImage`); the writer keeps it
/// until the entry is written, so the 30 MiB do not stay for the whole of a long trace.
///
/// `@unchecked Sendable`: `failure`, `thread` and the plan are guarded by mutexes; the rest is
/// immutable.
public final class PendingHeaders: @unchecked Sendable {
    /// The memfd holding the tar stream (and the files kprobe-run adds to the tree); valid until
    /// `releaseImage`.
    public let imageFD: Int32
    /// The bytes of the memfd to map.
    public let imageSize: Int
    /// The entry's final path, where the compiler sees the files.
    public let root: String
    /// Every file of the tree, relative to `root`, with its bytes in the image.
    public let files: [(path: String, offset: Int, size: Int)]
    /// The lock the writer holds until the entry is complete.
    public let lockPath: String

    private let plan: Mutex<ArchivePlan?>
    private let index: [String: (offset: Int, size: Int)]
    private let finished = Mutex(false)
    private let state = Mutex<(thread: pthread_t?, tid: pid_t, failure: HeaderError?)>((nil, 0, nil))

    /// The writer's nice value while the run goes on: on a machine with few cores it would
    /// otherwise take CPU time from the compile, which the first run waits for (the ~6,400
    /// creations are mostly kernel time, several seconds when the filesystem is slow).
    static let writerNice: Int32 = 10

    init(plan: ArchivePlan, root: String, files: [(path: String, offset: Int, size: Int)], lockPath: String) {
        self.plan = Mutex(plan)
        imageFD = plan.image.fd
        imageSize = plan.image.count
        self.root = root
        self.files = files
        self.lockPath = lockPath
        index = Dictionary(files.map { ($0.path, ($0.offset, $0.size)) }, uniquingKeysWith: { _, last in last })
    }

    /// The text of the tree's file at `path` (absolute, below `root`), as the compiler sees it.
    public func text(of path: String) -> String? {
        guard path.hasPrefix(root + "/"), let (offset, size) = index[String(path.dropFirst(root.count + 1))] else { return nil }
        return plan.withLock { plan in
            plan.map { String(decoding: UnsafeRawBufferPointer(start: $0.image.base + offset, count: size), as: UTF8.self) }
        }
    }

    /// Whether the tree has a directory at `path` (relative to `root`).
    func isDirectory(_ path: String) -> Bool { plan.withLock { $0?.isDirectory(path) ?? false } }

    /// The compile is done with the image: this run's reference to it goes (the writer's stays
    /// until the entry is written).
    public func releaseImage() { plan.withLock { $0 = nil } }

    /// Runs `write` on a new thread; registered so that the process waits for it at exit.
    func start(_ write: @escaping @Sendable () throws(HeaderError) -> Void) throws(HeaderError) {
        final class Job {
            let write: @Sendable () throws(HeaderError) -> Void
            let owner: PendingHeaders
            init(_ write: @escaping @Sendable () throws(HeaderError) -> Void, _ owner: PendingHeaders) {
                self.write = write
                self.owner = owner
            }
        }
        let context = Unmanaged.passRetained(Job(write, self))
        var id = pthread_t()
        let status = pthread_create(&id, nil, { context in
            let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
            let tid = pid_t(kprobe_run_gettid())
            job.owner.state.withLock { $0.tid = tid }
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), PendingHeaders.writerNice)
            do throws(HeaderError) {
                try job.write()
            } catch {
                job.owner.state.withLock { $0.failure = error }
            }
            job.owner.finished.withLock { $0 = true }
            return nil
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            throw HeaderError("cannot start a thread to write the header cache: \(Errno(status))", kind: .internal)
        }
        state.withLock { $0.thread = id }
        PendingHeaders.register(self)
    }

    /// Waits for the entry to be complete; the writer's error if it failed (the entry is then
    /// not in the cache, and the next run unpacks again).
    @discardableResult
    public func wait() -> HeaderError? {
        let (thread, tid) = state.withLock { state -> (pthread_t?, pid_t) in
            defer { state.thread = nil }
            return (state.thread, state.tid)
        }
        guard let thread else { return state.withLock { $0.failure } }
        // Someone waits for it now: back to the process's own priority where that is allowed
        // (root; others keep the writer's nice value).
        if tid != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)) }
        pthread_join(thread, nil)
        return state.withLock { $0.failure }
    }

    private static let running = Mutex<[PendingHeaders]>([])
    private static let exitHook = Mutex(false)

    private static func register(_ pending: PendingHeaders) {
        running.withLock { $0.append(pending) }
        exitHook.withLock { installed in
            guard !installed else { return }
            installed = true
            // Every way out of kprobe-run (a finished run, an error's exit code) goes through
            // exit(3), which runs this: the entry is finished rather than left half-written.
            atexit {
                for pending in PendingHeaders.running.withLock({ $0 }) {
                    // Someone at a terminal sees why the exit takes a moment.
                    if isatty(2) == 1, !pending.finished.withLock({ $0 }) {
                        let line = "kprobe-run: finishing the kernel headers' cache entry \(pending.root) before exiting\n"
                        try? FileSystem.writeAll(Array(line.utf8), to: 2)
                    }
                    if let error = pending.wait() {
                        let line = "kprobe-run: the kernel headers were not kept in the cache: \(error.message)\n"
                        try? FileSystem.writeAll(Array(line.utf8), to: 2)
                    }
                }
            }
        }
    }
}
