import Glibc

/// SIGINT/SIGTERM (and SIGHUP, which adbd sends when the adb connection of a device-side run
/// closes) delivered as bytes on a pipe (the self-pipe trick), so that the poll loop sees
/// them whichever thread the kernel picks, and SIGPIPE ignored so a closed stdout is an EPIPE
/// the session handles rather than a sudden death with links still attached.
final class SignalPipe {
    let readFD: Int32
    private let writeFD: Int32
    private var previous: [(Int32, __sighandler_t?)] = []

    /// `extra`: further signals to forward (SIGCHLD when a `-c` command runs).
    init(extra: [Int32] = []) throws(RuntimeError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw RuntimeError(.internal, "cannot create the signal pipe: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
        signalPipeWriteFD = writeFD
        // A parent may start kprobe-run with signals blocked (the mask survives exec), and a
        // blocked SIGCHLD would never end a -c session.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGINT, SIGTERM, SIGHUP] + extra {
            previous.append((signal, Glibc.signal(signal, forwardSignal)))
            sigaddset(&unblock, signal)
        }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        previous.append((SIGPIPE, Glibc.signal(SIGPIPE, SIG_IGN)))
    }

    /// The signal received, if any, without blocking.
    func take() -> Int32? {
        var byte: UInt8 = 0
        let n = read(readFD, &byte, 1)
        return n == 1 ? Int32(byte) : nil
    }

    func restore() {
        for (signal, handler) in previous.reversed() {
            _ = Glibc.signal(signal, handler)
        }
        previous.removeAll()
        signalPipeWriteFD = -1
    }

    deinit {
        restore()
        close(readFD)
        close(writeFD)
    }
}

/// Read by the signal handler; written only while no handler is installed or by the installer.
nonisolated(unsafe) private var signalPipeWriteFD: Int32 = -1

/// Async-signal-safe: one write(2) to a non-blocking pipe.
private let forwardSignal: @convention(c) (Int32) -> Void = { signal in
    let fd = signalPipeWriteFD
    guard fd >= 0 else { return }
    let saved = errno
    var byte = UInt8(truncatingIfNeeded: signal)
    _ = write(fd, &byte, 1)
    errno = saved
}
