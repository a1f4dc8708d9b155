import Glibc
import KprobeSupport

/// The command of `-c`: started at once, so that its pid is known before the probe is compiled
/// and loaded, but held before it runs anything until every program is attached.
///
/// It is spawned as `/bin/sh -c 'read from fd 3 || exit 127; exec …'`: the shell waits on a
/// pipe whose write end kprobe-run keeps; `release` writes a newline and the shell execs the
/// command in the same process, so the pid stays the same. A simple command (words without
/// shell syntax, e.g. `ls -l /tmp`) is exec'd directly, so the pid is the command's own; any
/// other command line runs under `/bin/sh -c`, and the pid is that shell's (dash forks even
/// the last command). If kprobe-run fails or dies first, the pipe closes without a newline and
/// the command never runs (status 127).
public struct TargetCommand: Sendable {
    public let pid: Int32
    public let command: String
    private let releaseFD: Int32

    /// How a finished command ended.
    public struct Status: Sendable, Equatable {
        /// The exit code, or 128 + the signal number when a signal ended it (as shells report).
        public var code: Int32
        public var signal: Int32?

        init(waitStatus: Int32) {
            let status = ExitStatus(waitStatus: waitStatus)
            self.init(code: status.code, signal: status.signal)
        }

        init(code: Int32, signal: Int32?) {
            self.code = code
            self.signal = signal
        }
    }

    static let holdScript = "IFS= read -r _ <&3 || exit 127; exec 3<&-; exec \"$@\""

    /// The argv the held shell execs: the words of a simple command, else `/bin/sh -c COMMAND`.
    static func argv(for command: String) -> [String] {
        let special = Set("|&;<>()$`\\\"'*?[]{}~#=%!\n")
        let words = command.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if !words.isEmpty, !command.contains(where: { special.contains($0) }) { return words }
        return [AndroidSystem.shell, "-c", command]
    }

    public static func start(_ command: String) throws(RuntimeError) -> TargetCommand {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
            throw RuntimeError(.internal, "cannot start '\(command)': pipe: \(Errno.current)")
        }
        let shell = AndroidSystem.shell
        let arguments = [shell, "-c", holdScript, "kprobe-run-command"] + argv(for: command)
        let pid: pid_t
        do {
            // dup2 onto fd 3 clears close-on-exec for the shell's copy only.
            pid = try ChildProcess.spawn(arguments, stdin: .inherit, extra: [(fds[0], 3)])
        } catch {
            close(fds[0])
            close(fds[1])
            throw RuntimeError(.internal, "cannot start '\(command)' with \(shell): \(error)")
        }
        close(fds[0])
        return TargetCommand(pid: pid, command: command, releaseFD: fds[1])
    }

    /// Lets the command run.
    func release() {
        var newline = UInt8(ascii: "\n")
        _ = write(releaseFD, &newline, 1)
        close(releaseFD)
    }

    /// Never runs the command (the shell exits 127 when the pipe closes) and reaps it; for
    /// failures between `start` and `release`.
    public func abandon() {
        close(releaseFD)
        _ = try? ChildProcess.wait(pid)
    }

    /// The status once the command has exited (and reaped it), nil while it runs.
    func exited() -> Status? {
        ChildProcess.exited(pid).map { Status(code: $0.code, signal: $0.signal) }
    }
}
