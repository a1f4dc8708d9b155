#if canImport(Glibc)
import Glibc
#endif

/// A short helper tool (getprop, modprobe) run to completion for one answer or one message.
public enum Subprocess {
    public enum Stream: Int32, Sendable {
        case standardOutput = 1
        case standardError = 2
    }

    /// Runs `path` with `arguments` (argv[0] first), stdin and the stream not captured on
    /// /dev/null. Returns the exit status (128 + the signal for a killed tool) and the first
    /// `limit` bytes of `capture`: the rest is read and dropped, so a chatty tool cannot block.
    public static func run(_ path: String, arguments: [String], capture: Stream, limit: Int = 4096) throws(Errno) -> (status: Int32, output: [UInt8]) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Errno.current }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let discarded: Stream = capture == .standardOutput ? .standardError : .standardOutput
        posix_spawn_file_actions_addopen(&actions, discarded.rawValue, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], capture.rawValue)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let attributes = SpawnAttributes()
        let spawned = posix_spawn(&pid, path, &actions, &attributes.raw, argv, environ)
        close(fds[1])
        defer { close(fds[0]) }
        guard spawned == 0 else { throw Errno(spawned) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<min(n, max(0, limit - output.count))])
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let exitStatus: Int32 = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exitStatus, output)
    }
}
