#if canImport(Glibc)
import Glibc
#endif

/// The few file operations every stage needs, with errors that name the path.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// The whole file, at most `limit` bytes (EFBIG past it). Works for /proc and /sys files,
    /// whose size stat reports as 0 or 4096, and for pipes and devices.
    public static func read(_ path: String, limit: Int = .max) throws(Errno) -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        let st = try? fd.status()
        let expected = st.map { $0.st_size > 0 ? Int($0.st_size) : 0 } ?? 0
        if expected > limit { throw Errno(EFBIG) }
        return try fd.readAll(limit: limit, expectedSize: expected)
    }

    /// Everything up to end of file from `fd` (a file, pipe or socket), at most `limit` bytes:
    /// one byte more fails with EFBIG, so an endless input (/dev/zero, a FIFO) cannot exhaust memory.
    public static func readAll(_ fd: Int32, limit: Int = .max, expectedSize: Int = 0) throws(Errno) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(min(expectedSize, limit))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { buffer in retryOnInterrupt { Glibc.read(fd, buffer.baseAddress, buffer.count) } }
            if n < 0 { throw Errno.current }
            if n == 0 { return result }
            guard n <= limit - result.count else { throw Errno(EFBIG) }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    /// All of `bytes` to `fd`, through short writes and interrupted ones.
    public static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            let n = retryOnInterrupt { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            if n < 0 { throw Errno.current }
            offset += n
        }
    }

    public static func writeAll(_ bytes: [UInt8], to fd: Int32) throws(Errno) {
        try writeAll(bytes[...], to: fd)
    }

    public static func writeAll(_ bytes: ArraySlice<UInt8>, to fd: Int32) throws(Errno) {
        let failure = bytes.withUnsafeBytes { buffer -> Errno? in
            do throws(Errno) {
                try writeAll(buffer, to: fd)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    public static func readString(_ path: String, limit: Int = .max) throws(Errno) -> String {
        String(decoding: try read(path, limit: limit), as: UTF8.self)
    }

    /// Writes through a temporary file in the same directory and renames it into place, so that
    /// a reader sees the old contents or the new ones, never a partial file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(Errno) {
        try AtomicFile.write(bytes, to: path, relativeTo: AT_FDCWD, mode: mode)
    }

    /// Refuses an output path that is neither a new name nor a regular file: renaming a result
    /// over a FIFO, a device (/dev/null) or a directory's symlink would replace the node itself.
    public static func checkReplaceable(_ path: String) throws(Failure) {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            guard errno == ENOENT else { throw Failure(.usage, "cannot use \(path) as the output: \(Errno.current)") }
            return
        }
        let kind: String
        switch st.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR: kind = "a directory"
        case S_IFLNK: kind = "a symbolic link"
        case S_IFIFO: kind = "a FIFO"
        case S_IFCHR, S_IFBLK: kind = "a device"
        case S_IFSOCK: kind = "a socket"
        default: kind = "not a regular file"
        }
        throw Failure(.usage, "refusing to write the output to \(path): it is \(kind), which the output would replace; name a regular file or a new path")
    }

    /// Directory of the running executable, from /proc/self/exe.
    public static func executableDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return directory(of: String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// The directory part of `path`: "." for a bare name, "/" for a name in the root.
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}

/// The most kprobe-run reads of an input that it takes whole, so that an endless or huge file
/// (`--headers /dev/zero`) is refused with a message instead of exhausting memory.
public enum InputLimit {
    /// A probe's source or a compiled object: real ones are kilobytes.
    public static let probe = 64 << 20
    /// A kheaders archive or a kernel module as given (kheaders is about 4 MiB), and what is
    /// read of a file that cannot be mapped (a pipe, a device).
    public static let archive = 128 << 20

    /// "larger than N MiB" for messages.
    public static func describe(_ limit: Int) -> String { "larger than \(limit >> 20) MiB" }
}

/// The process environment as a dictionary, without Foundation.
public enum Environment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return result
    }

    public static func get(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
