#if canImport(Glibc)
import Glibc
#endif

/// While a device-side run streams back, SIGINT, SIGTERM and SIGHUP to kprobe-run go to the adb
/// client instead (once each), which stops the command on the device; kprobe-run then waits for
/// adb to return, so it ends only after the device side has detached.
final class SignalForwarder {
    private var previous: [(Int32, __sighandler_t?)] = []

    init() {
        forwardedSignal = 0
        forwardTarget = 0
        var stops = sigset_t()
        sigemptyset(&stops)
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            previous.append((signal, Glibc.signal(signal, forwardToChild)))
            sigaddset(&stops, signal)
        }
        // kprobe-run may have been started with them blocked; they must reach the handler.
        pthread_sigmask(SIG_UNBLOCK, &stops, nil)
    }

    /// From now on signals go to `pid`; one that arrived before it existed is delivered now.
    func target(_ pid: pid_t) {
        var stops = sigset_t(), saved = sigset_t()
        sigemptyset(&stops)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&stops, signal) }
        pthread_sigmask(SIG_BLOCK, &stops, &saved)
        forwardTarget = pid
        if forwardedSignal != 0 { kill(pid, forwardedSignal) }
        pthread_sigmask(SIG_SETMASK, &saved, nil)
    }

    /// The first signal received, if any.
    var received: Int32? { forwardedSignal == 0 ? nil : forwardedSignal }

    func restore() {
        forwardTarget = 0
        for (signal, handler) in previous.reversed() { _ = Glibc.signal(signal, handler) }
        previous.removeAll()
    }

    deinit { restore() }
}

/// Written by the handler and by the (single) thread driving the run while it is not installed.
nonisolated(unsafe) private var forwardTarget: pid_t = 0
nonisolated(unsafe) private var forwardedSignal: Int32 = 0

/// Async-signal-safe: kill(2) once per kind of stop; repeats of a signal are not passed on, so a
/// second Ctrl-C cannot cut adb off before the device side has finished detaching.
private let forwardToChild: @convention(c) (Int32) -> Void = { signal in
    let saved = errno
    if forwardedSignal == 0 {
        forwardedSignal = signal
        if forwardTarget > 0 { kill(forwardTarget, signal) }
    }
    errno = saved
}
