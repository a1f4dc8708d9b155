import Glibc
import KprobeSupport

/// A private directory under /tmp, removed with everything in it when the value goes away.
public final class ScratchDirectory: Sendable {
    public let path: String

    public init(_ purpose: String = "test") throws {
        var template = Array("/tmp/kprobe-run-\(purpose)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Errno.current }
        path = String(cString: made)
    }

    deinit { Self.remove(path) }

    /// Removes `path` and, for a directory, everything under it; symlinks are removed, never followed.
    public static func remove(_ path: String) {
        if unlink(path) == 0 || errno == ENOENT { return }
        for entry in (try? list(path)) ?? [] { remove(path + "/" + entry) }
        rmdir(path)
    }

    /// The names in directory `path`, without "." and "..", sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw Errno.current }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Names directly in the directory, or in `sub` under it; empty when it does not exist.
    public func names(_ sub: String = "") -> [String] {
        (try? Self.list(sub.isEmpty ? path : path + "/" + sub)) ?? []
    }

    /// A private cache root inside the directory (created on first use, as kprobe-run does).
    public var cache: CacheRoot { CacheRoot(path: path + "/cache") }

    /// Writes a file (creating no directories) and returns its path.
    @discardableResult
    public func write(_ name: String, _ text: String, mode: mode_t = 0o644) throws -> String {
        let file = path + "/" + name
        try FileSystem.writeAtomically(Array(text.utf8), to: file, mode: mode)
        return file
    }

    /// Writes an executable shell script and returns its path.
    public func script(_ name: String, _ body: String) throws -> String {
        try write(name, "#!/bin/sh\n" + body + "\n", mode: 0o755)
    }

    public func makeDirectory(_ name: String) throws -> String {
        let directory = path + "/" + name
        guard mkdir(directory, 0o700) == 0 else { throw Errno.current }
        return directory
    }
}
