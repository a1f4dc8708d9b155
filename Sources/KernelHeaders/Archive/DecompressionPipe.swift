import CLibArchive
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Decompresses an xz stream on a thread of its own into an `ArchiveImage` and hands the tar
/// stream over as it grows, so that decompression overlaps the parsing and the creation of
/// files (as `tar -xJf` gets from running `xz -d` beside it).
///
/// The producer stops after `image.capacity` bytes of output, so a decompression bomb cannot
/// run away; the consumer reads the image in place, so nothing is copied between the two.
///
/// `@unchecked Sendable`: the only state the two threads share (`available`, `finished`,
/// `failure`, `cancelled`) is read and written with `changed` held; bytes below `available` are
/// never written again, and the owner keeps the input and the image alive until `stop` has
/// joined the thread.
final class DecompressionPipe: @unchecked Sendable {
    /// How much the producer decompresses before it tells the consumer.
    static let chunkSize = 1 << 18

    let image: ArchiveImage
    private let input: UnsafeRawBufferPointer
    private let archiveName: String
    private let changed = ConditionLock()

    private var available = 0
    private var finished = false
    private var cancelled = false
    private var failure: HeaderError?

    /// Consumer only: how far the consumer has been handed the stream.
    private var consumed = 0
    private var thread: NativeThread?

    /// Starts decompressing `input`, which must stay valid until `stop` returns.
    init(_ input: UnsafeRawBufferPointer, archiveName: String, maxBytes: Int64) throws(HeaderError) {
        self.input = input
        self.archiveName = archiveName
        image = try ArchiveImage(capacity: ArchiveImage.capacity(for: maxBytes), archiveName: archiveName)
        do throws(Errno) {
            thread = try NativeThread.start { [self] in produce() }
        } catch {
            throw HeaderError("cannot start a thread to decompress \(archiveName): \(error)", kind: .internal)
        }
    }

    /// The producer's error, if it stopped on one.
    var error: HeaderError? { changed.withLock { failure } }

    /// Tells the producer to stop and waits for it. Safe to call more than once.
    func stop() {
        guard let thread else { return }
        changed.withLock { cancelled = true }
        thread.join()
        self.thread = nil
    }

    /// The next piece of the tar stream for libarchive: its length, 0 at the end, -1 after an
    /// error (then `error` says which). The bytes stay valid as long as the image.
    func next(_ buffer: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        changed.lock()
        defer { changed.unlock() }
        while available == consumed, !finished {
            changed.wait()
        }
        guard available > consumed else { return failure == nil ? 0 : -1 }
        buffer.pointee = UnsafeRawPointer(image.base + consumed)
        defer { consumed = available }
        return available - consumed
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
        changed.withLock {
            if case .failure(let error) = outcome { failure = error }
            image.count = available
            finished = true
            changed.broadcast()
        }
    }

    /// Whether the consumer has stopped; otherwise makes `total` bytes available to it.
    private func publish(_ total: Int) -> Bool {
        changed.withLock {
            available = total
            changed.broadcast()
            return cancelled
        }
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
        var total = 0
        while true {
            let room = min(Self.chunkSize, image.capacity - total)
            guard room > 0 else {
                throw HeaderError("refusing \(archiveName): its tar stream decompresses to more than \(image.capacity) bytes, more than the limits on unpacked size and members allow; nothing was unpacked from it. Use the kernel's own kheaders archive or another --headers source")
            }
            let n = archive_read_data(reader, image.base + total, room)
            if n == 0 { return }
            guard n > 0 else { throw SecureExtractor.corrupt(archiveName, reader) }
            total += n
            if publish(total) { return }
        }
    }
}
