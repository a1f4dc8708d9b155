import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// One run of a child process with its stdin fed from memory and its stdout and stderr
/// collected, all from one thread with poll() so that neither side can block the other.
enum WorkerProcess {
    enum Termination: CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        var description: String {
            switch self {
            case .exited(let status): return "exited with status \(status)"
            case .signaled(let signal):
                let name = strsignal(signal).map { String(cString: $0) } ?? "signal"
                return "was killed by signal \(signal) (\(name))"
            }
        }
    }

    struct Outcome {
        var termination: Termination
        var stdout: [UInt8]
        var stderr: [UInt8]
    }

    /// Only the end of stderr is kept: it is for a message, and a crashing LLVM can print a lot.
    static let stderrLimit = 16 * 1024

    static func run(path: String, input: [UInt8]) throws(CompileError) -> Outcome {
        // Socket pairs rather than pipes: they are created close-on-exec atomically (another
        // thread's spawn cannot inherit them), and send(MSG_NOSIGNAL) to a worker that died
        // early fails with EPIPE instead of raising SIGPIPE in kprobe-run.
        var stdinPair: [Int32] = [-1, -1]
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        func closeAll() {
            for fd in stdinPair + stdoutPipe + stderrPipe where fd >= 0 { close(fd) }
        }
        let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, socketType, 0, &stdinPair) == 0,
              socketpair(AF_UNIX, socketType, 0, &stdoutPipe) == 0,
              socketpair(AF_UNIX, socketType, 0, &stderrPipe) == 0
        else {
            let err = Errno.current
            closeAll()
            throw CompileError("cannot create pipes for the compiler worker: \(err)")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)

        let attributes = SpawnAttributes()

        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        defer { for argument in argv { free(argument) } }
        let spawned = posix_spawn(&pid, path, &actions, &attributes.raw, argv, environ)
        close(stdinPair[1]); stdinPair[1] = -1
        close(stdoutPipe[1]); stdoutPipe[1] = -1
        close(stderrPipe[1]); stderrPipe[1] = -1
        guard spawned == 0 else {
            closeAll()
            throw CompileError("cannot start the compiler worker \(path): \(Errno(spawned))")
        }

        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var written = 0
        var input = input
        if input.isEmpty {
            close(stdinPair[0]); stdinPair[0] = -1
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while stdoutPipe[0] >= 0 || stderrPipe[0] >= 0 {
            var fds: [pollfd] = []
            if stdinPair[0] >= 0 { fds.append(pollfd(fd: stdinPair[0], events: Int16(POLLOUT), revents: 0)) }
            if stdoutPipe[0] >= 0 { fds.append(pollfd(fd: stdoutPipe[0], events: Int16(POLLIN), revents: 0)) }
            if stderrPipe[0] >= 0 { fds.append(pollfd(fd: stderrPipe[0], events: Int16(POLLIN), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for entry in fds where entry.revents != 0 {
                if entry.fd == stdinPair[0] {
                    let n = input.withUnsafeBytes { buffer in
                        send(entry.fd, buffer.baseAddress! + written, buffer.count - written, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                    }
                    if n > 0 { written += n }
                    if (n < 0 && errno != EAGAIN && errno != EINTR) || written == input.count {
                        // Done, or the worker stopped reading: its exit status will say why.
                        close(stdinPair[0]); stdinPair[0] = -1
                        input = []
                    }
                    continue
                }
                let n = chunk.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR || errno == EAGAIN { continue }
                let isStdout = entry.fd == stdoutPipe[0]
                if n <= 0 {
                    if isStdout { close(stdoutPipe[0]); stdoutPipe[0] = -1 } else { close(stderrPipe[0]); stderrPipe[0] = -1 }
                    continue
                }
                if isStdout {
                    stdout.append(contentsOf: chunk[0..<n])
                } else {
                    stderr.append(contentsOf: chunk[0..<n])
                    if stderr.count > stderrLimit * 2 { stderr.removeFirst(stderr.count - stderrLimit) }
                }
            }
        }
        closeAll()

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                throw CompileError("cannot wait for the compiler worker \(path): \(Errno.current)")
            }
        }
        if stderr.count > stderrLimit { stderr.removeFirst(stderr.count - stderrLimit) }
        let termination: Termination = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        return Outcome(termination: termination, stdout: stdout, stderr: stderr)
    }
}
