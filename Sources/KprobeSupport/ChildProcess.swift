#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended: the one decoder of wait(2) statuses.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public init(waitStatus: Int32) {
        let signal = waitStatus & 0x7f
        self = signal == 0 ? .exited((waitStatus >> 8) & 0xff) : .signaled(signal)
    }

    /// As shells report it: the exit code, or 128 + the signal.
    public var code: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    public var signal: Int32? {
        if case .signaled(let signal) = self { return signal }
        return nil
    }

    public var succeeded: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let status): return "exited with status \(status)"
        case .signaled(let signal):
            let name = strsignal(signal).map { String(cString: $0) } ?? "signal"
            return "was killed by signal \(signal) (\(name))"
        }
    }
}

/// Starting, waiting for and talking to child processes: the one place kprobe-run calls
/// posix_spawn and waitpid.
public enum ChildProcess {
    /// Where a child's descriptor 0, 1 or 2 goes.
    public enum Stream {
        case inherit
        case null
        case descriptor(Int32)
    }

    /// Starts `argv` (argv[0] is the path unless `path` is given) with the signal state of a
    /// freshly exec'd program (`SpawnAttributes`). `extra` maps descriptors of ours onto the
    /// child's numbers (dup2 clears close-on-exec for the child's copy only). With
    /// `ownProcessGroup` the child leads its own group, so a terminal's Ctrl-C reaches kprobe-run
    /// only, which forwards it once.
    public static func spawn(_ argv: [String], path: String? = nil, stdin: Stream = .null, stdout: Stream = .inherit,
                             stderr: Stream = .inherit, extra: [(source: Int32, target: Int32)] = [],
                             ownProcessGroup: Bool = false) throws(Errno) -> pid_t {
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
        for (source, target) in extra { posix_spawn_file_actions_adddup2(&actions, source, target) }
        let attributes = SpawnAttributes(ownProcessGroup: ownProcessGroup)
        let cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path ?? argv[0], &actions, &attributes.raw, cArguments, environ)
        guard result == 0 else { throw Errno(result) }
        return pid
    }

    /// Waits for `pid` to end and reaps it.
    public static func wait(_ pid: pid_t) throws(Errno) -> ExitStatus {
        var status: Int32 = 0
        guard retryOnInterrupt({ waitpid(pid, &status, 0) }) == pid else { throw Errno.current }
        return ExitStatus(waitStatus: status)
    }

    /// How `pid` ended if it has (and reaps it), nil while it runs.
    public static func exited(_ pid: pid_t) -> ExitStatus? {
        var status: Int32 = 0
        guard retryOnInterrupt({ waitpid(pid, &status, WNOHANG) }) == pid else { return nil }
        return ExitStatus(waitStatus: status)
    }

    /// How much of an output stream `run` keeps.
    public enum Keep: Sendable {
        /// Sent to /dev/null.
        case none
        /// The first N bytes; the rest is read and dropped, so a chatty child cannot block.
        case head(Int)
        /// The last N bytes (for messages: a crashing program prints its cause last).
        case tail(Int)
        case all
    }

    public struct Outcome: Sendable {
        public var status: ExitStatus
        public var stdout: [UInt8]
        public var stderr: [UInt8]
    }

    /// Runs `argv` to the end with `input` on its stdin (nil: /dev/null) and its stdout and
    /// stderr kept as asked, all from one thread with poll() so that neither side can block the
    /// other. Socket pairs, not pipes: created close-on-exec atomically, and a child that stops
    /// reading makes send fail with EPIPE instead of raising SIGPIPE here.
    public static func run(_ argv: [String], path: String? = nil, input: [UInt8]? = nil,
                           stdout keepOut: Keep = .all, stderr keepErr: Keep = .none,
                           extra: [(source: Int32, target: Int32)] = []) throws(Errno) -> Outcome {
        let stdinPair = try DescriptorPair.socketPair()
        let stdoutPair = try DescriptorPair.socketPair()
        let stderrPair = try DescriptorPair.socketPair()
        let pid = try spawn(argv, path: path,
                            stdin: input == nil ? .null : .descriptor(stdinPair.write.rawValue),
                            stdout: keepOut.isNone ? .null : .descriptor(stdoutPair.write.rawValue),
                            stderr: keepErr.isNone ? .null : .descriptor(stderrPair.write.rawValue), extra: extra)
        // The child holds the only other copies now, so its exit ends the loop below.
        let toChild = stdinPair.keepingOurEnd()
        let fromStdout = stdoutPair.keepingOurEnd()
        let fromStderr = stderrPair.keepingOurEnd()
        var stdout = Collected(keep: keepOut), stderr = Collected(keep: keepErr)
        let input = input ?? []
        var inputFD = input.isEmpty ? -1 : toChild.rawValue
        if inputFD < 0 { shutdown(toChild.rawValue, Int32(SHUT_WR)) }
        var written = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var open: [Int32] = (keepOut.isNone ? [] : [fromStdout.rawValue]) + (keepErr.isNone ? [] : [fromStderr.rawValue])
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inputFD >= 0 { fds.append(pollfd(fd: inputFD, events: Int16(POLLOUT), revents: 0)) }
            guard retryOnInterrupt({ poll(&fds, nfds_t(fds.count), -1) }) >= 0 else { break }
            for entry in fds where entry.revents != 0 {
                if entry.fd == inputFD {
                    let n = input.withUnsafeBytes { buffer in
                        send(entry.fd, buffer.baseAddress! + written, buffer.count - written, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                    }
                    if n > 0 { written += n }
                    if (n < 0 && errno != EAGAIN && errno != EINTR) || written == input.count {
                        // Done, or the child stopped reading: its exit status will say why.
                        shutdown(inputFD, Int32(SHUT_WR))
                        inputFD = -1
                    }
                    continue
                }
                let n = chunk.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR || errno == EAGAIN { continue }
                guard n > 0 else {
                    open.removeAll { $0 == entry.fd }
                    continue
                }
                if entry.fd == fromStdout.rawValue { stdout.append(chunk[0..<n]) } else { stderr.append(chunk[0..<n]) }
            }
        }
        _ = consume toChild
        _ = consume fromStdout
        _ = consume fromStderr
        return Outcome(status: try wait(pid), stdout: stdout.finished, stderr: stderr.finished)
    }

    /// Output kept as `Keep` says, bounded while it is collected.
    private struct Collected {
        var keep: Keep
        var bytes: [UInt8] = []

        mutating func append(_ chunk: ArraySlice<UInt8>) {
            switch keep {
            case .none: break
            case .all: bytes.append(contentsOf: chunk)
            case .head(let limit): bytes.append(contentsOf: chunk.prefix(max(0, limit - bytes.count)))
            case .tail(let limit):
                bytes.append(contentsOf: chunk)
                if bytes.count > limit * 2 { bytes.removeFirst(bytes.count - limit) }
            }
        }

        var finished: [UInt8] {
            if case .tail(let limit) = keep, bytes.count > limit { return Array(bytes.suffix(limit)) }
            return bytes
        }
    }
}

extension ChildProcess.Keep {
    var isNone: Bool {
        if case .none = self { return true }
        return false
    }
}
