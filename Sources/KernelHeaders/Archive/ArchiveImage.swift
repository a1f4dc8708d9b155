import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The decompressed tar stream of a kheaders archive, whole, in a memory file (memfd): the files
/// written to the cache are written from it, and the compiler worker maps the same file and reads
/// the headers from it while the cache entry is still being written (see `PendingHeaders`).
///
/// The file is sparse and mapped at its largest allowed size up front, so the bytes never move
/// while the decompressor appends to them and pointers into it stay valid; only the pages written
/// take memory. Where memfd_create is refused (an old kernel, a seccomp or SELinux policy) the
/// image is anonymous memory: extraction works the same, only no worker can map it.
final class ArchiveImage: @unchecked Sendable {
    /// The memory file, or -1 for anonymous memory.
    let fd: Int32
    let base: UnsafeMutableRawPointer
    let capacity: Int
    /// The bytes decompressed; final once the decompressor has finished.
    var count = 0

    /// Room for the 32-bit device binary's address space; 64-bit reserves the whole allowance.
    static func capacity(for maxBytes: Int64) -> Int {
        let ceiling: Int64 = Int.bitWidth == 64 ? maxBytes : min(maxBytes, 256 << 20)
        return Int(min(ceiling, Int64(Int.max)))
    }

    init(capacity: Int, archiveName: String) throws(HeaderError) {
        self.capacity = capacity
        let memory = kprobe_run_memfd_create("kprobe-run-kheaders")
        if memory >= 0, ftruncate(memory, off_t(capacity)) == 0,
           let map = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0), map != MAP_FAILED {
            fd = memory
            base = map
            return
        }
        if memory >= 0 { close(memory) }
        guard let map = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              map != MAP_FAILED else {
            throw HeaderError("cannot reserve \(capacity >> 20) MiB of memory to decompress \(archiveName): \(Errno.current)", kind: .internal)
        }
        fd = -1
        base = map
    }

    deinit {
        munmap(base, capacity)
        if fd >= 0 { close(fd) }
    }

    /// Adds `extra` after the stream; its offset, nil when it does not fit. (The compiler worker
    /// reads each file into a buffer of its own, which it terminates: nothing here needs a NUL.)
    func append(_ extra: [UInt8]) -> Int? {
        let offset = count
        guard extra.count <= capacity - offset else { return nil }
        extra.withUnsafeBytes { (base + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        count = offset + extra.count
        return offset
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The offset of `pointer` if `length` bytes from it lie inside the image (and not in a
    /// buffer of libarchive's own).
    func offset(of pointer: UnsafeRawPointer, length: Int) -> Int? {
        let start = UnsafeRawPointer(base)
        guard pointer >= start, length >= 0, pointer - start <= capacity - length else { return nil }
        return pointer - start
    }
}
