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

    /// The whole file. Works for /proc and /sys files, whose size stat reports as 0 or 4096.
    public static func read(_ path: String) throws(Errno) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno.current }
        defer { close(fd) }
        var st = stat()
        let expected = fstat(fd, &st) == 0 && st.st_size > 0 ? Int(st.st_size) : 0
        return try readAll(fd, expectedSize: expected)
    }

    /// Everything up to end of file from `fd` (a file, pipe or socket), retrying interrupted reads.
    public static func readAll(_ fd: Int32, expectedSize: Int = 0) throws(Errno) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(expectedSize)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno.current
            }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    /// All of `bytes` to `fd`, through short writes and interrupted ones.
    public static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno.current
            }
            offset += n
        }
    }

    public static func writeAll(_ bytes: [UInt8], to fd: Int32) throws(Errno) {
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

    public static func readString(_ path: String) throws(Errno) -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// Writes through a temporary file in the same directory and renames it into place, so that
    /// a reader sees the old contents or the new ones, never a partial file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(Errno) {
        let temporary = path + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Errno.current }
        do {
            try writeAll(bytes, to: fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        if fsync(fd) != 0 || close(fd) != 0 {
            let err = Errno.current
            unlink(temporary)
            throw err
        }
        if rename(temporary, path) != 0 {
            let err = Errno.current
            unlink(temporary)
            throw err
        }
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
