import CLibArchive
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Decompresses an xz stream on a thread of its own and hands the tar stream over in chunks,
/// so that decompression overlaps the creation of files (as `tar -xJf` gets from running `xz -d`
/// beside it).
///
/// The producer fills at most `chunkCount` chunks ahead of the consumer and stops after
/// `maxBytes` of output, so neither a slow consumer nor a decompression bomb makes it run away.
///
/// `@unchecked Sendable`: the only state the two threads share (`ready`, `free`, `finished`,
/// `failure`, `cancelled`) is read and written with `mutex` held; a chunk's bytes belong to the
/// producer while it is on the free list or being filled and to the consumer from the moment it
/// is taken off `ready` until the consumer's next `next` call puts it back, and the handover
/// happens under the mutex. The input bytes are only read, and the owner keeps them alive until
/// `stop` has joined the thread.
final class DecompressionPipe: @unchecked Sendable {
    static let chunkSize = 1 << 18
    static let chunkCount = 8

    private let input: UnsafeRawBufferPointer
    private let archiveName: String
    private let maxBytes: Int64
    private let storage: UnsafeMutableRawPointer
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let changed: UnsafeMutablePointer<pthread_cond_t>

    private var ready: [(chunk: Int, count: Int)] = []
    private var free: [Int]
    private var finished = false
    private var cancelled = false
    private var failure: HeaderError?

    /// Consumer only: the chunk libarchive is reading until it asks for the next one.
    private var lent: Int?
    private var thread: pthread_t?

    /// Starts decompressing `input`, which must stay valid until `stop` returns.
    init(_ input: UnsafeRawBufferPointer, archiveName: String, maxBytes: Int64) throws(HeaderError) {
        self.input = input
        self.archiveName = archiveName
        self.maxBytes = maxBytes
        storage = UnsafeMutableRawPointer.allocate(byteCount: Self.chunkSize * Self.chunkCount, alignment: 64)
        mutex = .allocate(capacity: 1)
        changed = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        free = Array((0..<Self.chunkCount).reversed())

        var id = pthread_t()
        let context = Unmanaged.passRetained(self)
        let status = pthread_create(&id, nil, { context in
            let pipe = Unmanaged<DecompressionPipe>.fromOpaque(context!).takeRetainedValue()
            pipe.produce()
            return nil
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            throw HeaderError("cannot start a thread to decompress \(archiveName): \(Errno(status))", kind: .internal)
        }
        thread = id
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
        storage.deallocate()
    }

    /// The producer's error, if it stopped on one.
    var error: HeaderError? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return failure
    }

    /// Tells the producer to stop and waits for it. Safe to call more than once.
    func stop() {
        guard let id = thread else { return }
        pthread_mutex_lock(mutex)
        cancelled = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        pthread_join(id, nil)
        thread = nil
    }

    /// The next piece of the tar stream for libarchive: its length, 0 at the end, -1 after an
    /// error (then `error` says which). `buffer` stays valid until the following call.
    func next(_ buffer: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let lent {
            free.append(lent)
            self.lent = nil
            pthread_cond_broadcast(changed)
        }
        while ready.isEmpty, !finished {
            pthread_cond_wait(changed, mutex)
        }
        guard !ready.isEmpty else { return failure == nil ? 0 : -1 }
        let (chunk, count) = ready.removeFirst()
        lent = chunk
        buffer.pointee = UnsafeRawPointer(storage + chunk * Self.chunkSize)
        return count
    }

    /// Reads the rest of the stream (what follows the tar's end-of-archive blocks), so that xz's
    /// integrity check covers all of it; throws the producer's error if there was one.
    func drain() throws(HeaderError) {
        var buffer: UnsafeRawPointer?
        while next(&buffer) > 0 {}
        if let error { throw error }
    }

    /// Opens `reader` on the tar stream. The reader must be freed before `stop`.
    func open(_ reader: OpaquePointer) -> Int32 {
        archive_read_open(reader, Unmanaged.passUnretained(self).toOpaque(), nil, { _, client, buffer in
            Unmanaged<DecompressionPipe>.fromOpaque(client!).takeUnretainedValue().next(buffer!)
        }, nil)
    }

    private func produce() {
        let outcome = Result { () throws(HeaderError) in try decompress() }
        pthread_mutex_lock(mutex)
        if case .failure(let error) = outcome { failure = error }
        finished = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// A chunk to fill, or nil once the consumer has stopped.
    private func takeFree() -> Int? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while free.isEmpty, !cancelled {
            pthread_cond_wait(changed, mutex)
        }
        return cancelled ? nil : free.removeLast()
    }

    private func publish(_ chunk: Int, count: Int) {
        pthread_mutex_lock(mutex)
        ready.append((chunk, count))
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    private func decompress() throws(HeaderError) {
        guard let reader = archive_read_new() else { throw HeaderError("cannot allocate an archive reader", kind: .internal) }
        defer { archive_read_free(reader) }
        // Only xz, and no format but the raw byte stream: the tar parser runs on the other side.
        archive_read_support_filter_xz(reader)
        archive_read_support_format_raw(reader)
        guard archive_read_open_memory(reader, input.baseAddress, input.count) == ARCHIVE_OK else {
            throw SecureExtractor.corrupt(archiveName, reader)
        }
        guard archive_filter_code(reader, 0) == ARCHIVE_FILTER_XZ else {
            throw SecureExtractor.notXZ(archiveName)
        }
        var entry: OpaquePointer?
        guard archive_read_next_header(reader, &entry) == ARCHIVE_OK else {
            throw SecureExtractor.corrupt(archiveName, reader)
        }
        var total: Int64 = 0
        while let chunk = takeFree() {
            let base = storage + chunk * Self.chunkSize
            var count = 0
            var ended = false
            while count < Self.chunkSize {
                let n = archive_read_data(reader, base + count, Self.chunkSize - count)
                if n == 0 {
                    ended = true
                    break
                }
                guard n > 0 else { throw SecureExtractor.corrupt(archiveName, reader) }
                count += n
            }
            total += Int64(count)
            guard total <= maxBytes else {
                throw HeaderError("refusing \(archiveName): its tar stream decompresses to more than \(maxBytes) bytes, more than the limits on unpacked size and members allow; nothing was unpacked from it. Use the kernel's own kheaders archive or another --headers source")
            }
            if count > 0 { publish(chunk, count: count) }
            if ended { return }
        }
    }
}
