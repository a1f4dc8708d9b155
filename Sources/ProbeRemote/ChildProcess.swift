import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// posix_spawn and wait, without Foundation: the adb client is the only program kprobe-run runs
/// on the host side of --adb.
enum ChildProcess {
    /// What a child wrote and how it ended (128 + signal when a signal ended it).
    struct Captured {
        var status: Int32
        var output: [UInt8]
        var errors: String
    }

    /// Where a child's descriptor 0, 1 or 2 goes.
    enum Stream {
        case inherit
        case null
        case descriptor(Int32)
    }

    /// Starts `argv` (argv[0] is the path). With `ownGroup` the child leads its own process group,
    /// so a terminal's Ctrl-C reaches kprobe-run only, which forwards it once.
    static func spawn(_ argv: [String], stdin: Stream = .null, stdout: Stream = .inherit,
                      stderr: Stream = .inherit, ownGroup: Bool = false,
                      closing: [Int32] = []) throws(RemoteError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
            case .descriptor(let source): posix_spawn_file_actions_adddup2(&actions, source, fd)
            }
        }
        for fd in closing { posix_spawn_file_actions_addclose(&actions, fd) }
        let attributes = SpawnAttributes(ownProcessGroup: ownGroup)
        let cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, argv[0], &actions, &attributes.raw, cArguments, environ)
        guard result == 0 else {
            throw RemoteError(.internal, "cannot run \(argv[0]): \(Errno(result))")
        }
        return pid
    }

    /// Waits for `pid`; 128 + N when signal N ended it.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 128 }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Runs `argv` to the end, collecting stdout (all of it) and stderr (the start of it).
    static func capture(_ argv: [String]) throws(RemoteError) -> Captured {
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard pipe(&out) == 0 else { throw RemoteError(.internal, "pipe: \(Errno.current)") }
        guard pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            throw RemoteError(.internal, "pipe: \(Errno.current)")
        }
        // Only the child's 1 and 2 (dup2 clears the flag) may keep the pipes open.
        for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawn(argv, stdout: .descriptor(out[1]), stderr: .descriptor(err[1]))
        } catch {
            [out[0], out[1], err[0], err[1]].forEach { close($0) }
            throw error
        }
        close(out[1])
        close(err[1])
        var output: [UInt8] = [], errors: [UInt8] = []
        drain([(out[0], { output.append(contentsOf: $0) }),
               (err[0], { if errors.count < 65536 { errors.append(contentsOf: $0) } })])
        close(out[0])
        close(err[0])
        return Captured(status: wait(pid), output: output, errors: String(decoding: errors, as: UTF8.self))
    }

    /// Reads every descriptor until end of file, whichever writes first.
    static func drain(_ sinks: [(Int32, (ArraySlice<UInt8>) -> Void)]) {
        var open = sinks
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0.0, events: Int16(POLLIN), revents: 0) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                return
            }
            var finished: [Int32] = []
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 {
                    finished.append(entry.fd)
                } else {
                    open[index].1(chunk[0..<n])
                }
            }
            open.removeAll { finished.contains($0.0) }
        }
    }
}
