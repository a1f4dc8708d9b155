#if canImport(Glibc)
import Glibc
#endif

/// Runs a system call again while it fails with EINTR (a signal arrived before it did anything).
/// Every loop of that kind in kprobe-run is this one.
@inlinable
public func retryOnInterrupt<Result: FixedWidthInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result != -1 || errno != EINTR { return result }
    }
}

/// An open file descriptor owned by exactly one value: closed when the value goes out of scope,
/// or earlier by `close()`; `release()` hands the number to a caller that closes it itself.
/// The model is swift-system's `FileDescriptor` with `closeAfter`, made noncopyable so that a
/// descriptor can be neither closed twice nor leaked on an early return.
public struct FileDescriptor: ~Copyable {
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (which must be open).
    public init(owning rawValue: Int32) { self.rawValue = rawValue }

    deinit { Glibc.close(rawValue) }

    /// Closes now, reporting what close(2) said (a write error on NFS, say).
    public consuming func close() throws(Errno) {
        let fd = rawValue
        discard self
        if Glibc.close(fd) != 0 { throw Errno.current }
    }

    /// Gives up ownership: the caller closes the descriptor.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// open(2) of `path`, always close-on-exec.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        try open(path, relativeTo: AT_FDCWD, flags, mode: mode)
    }

    /// openat(2) of `name` below the directory open at `directory`, always close-on-exec.
    public static func open(_ name: String, in directory: borrowing FileDescriptor, _ flags: Int32,
                            mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        try open(name, relativeTo: directory.rawValue, flags, mode: mode)
    }

    /// openat(2) relative to a raw directory descriptor (or AT_FDCWD).
    public static func open(_ name: String, relativeTo directory: Int32, _ flags: Int32,
                            mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        let fd = retryOnInterrupt { openat(directory, name, flags | O_CLOEXEC, mode) }
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(owning: fd)
    }

    /// A directory below `directory` that is not a symlink.
    public static func openDirectory(_ name: String, relativeTo directory: Int32 = AT_FDCWD) throws(Errno) -> FileDescriptor {
        try open(name, relativeTo: directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
    }

    /// fstat(2).
    public func status() throws(Errno) -> stat {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw Errno.current }
        return st
    }

    /// Everything up to end of file, at most `limit` bytes (EFBIG past it).
    public func readAll(limit: Int = .max, expectedSize: Int = 0) throws(Errno) -> [UInt8] {
        try FileSystem.readAll(rawValue, limit: limit, expectedSize: expectedSize)
    }

    /// All of `bytes`, through short and interrupted writes.
    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        try FileSystem.writeAll(bytes, to: rawValue)
    }

    /// fsync(2).
    public func sync() throws(Errno) {
        guard retryOnInterrupt({ fsync(rawValue) }) == 0 else { throw Errno.current }
    }
}

/// Both ends of a pipe (or of a socket pair), each owned.
public struct DescriptorPair: ~Copyable {
    public var read: FileDescriptor
    public var write: FileDescriptor

    /// A close-on-exec pipe (Glibc's module map leaves out pipe2, so the flag follows at once).
    public static func pipe() throws(Errno) -> DescriptorPair {
        var fds: [Int32] = [-1, -1]
        guard Glibc.pipe(&fds) == 0 else { throw Errno.current }
        let pair = DescriptorPair(read: FileDescriptor(owning: fds[0]), write: FileDescriptor(owning: fds[1]))
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return pair
    }

    /// A close-on-exec stream socket pair: unlike a pipe, send(MSG_NOSIGNAL) to a peer that is
    /// gone fails with EPIPE instead of raising SIGPIPE. `read` is ours, `write` the child's end.
    public static func socketPair() throws(Errno) -> DescriptorPair {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { throw Errno.current }
        return DescriptorPair(read: FileDescriptor(owning: fds[0]), write: FileDescriptor(owning: fds[1]))
    }

    /// Closes `write` (the end a child was given) and keeps `read`.
    public consuming func keepingOurEnd() -> FileDescriptor {
        let ours = read
        return ours
    }
}
