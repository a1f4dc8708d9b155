#if canImport(Glibc)
import Glibc
#endif

/// posix_spawn attributes for a child that starts as a freshly exec'd program would: nothing
/// blocked, and default actions for the signals kprobe-run handles itself. Without them a child
/// inherits the spawning thread's mask (test harnesses and Dispatch workers block SIGTERM and
/// SIGCHLD), and a held command, the compiler worker or an adb client could not be stopped.
public final class SpawnAttributes {
    public var raw = posix_spawnattr_t()

    /// With `ownProcessGroup`, the child leads a new process group, so that signals sent to the
    /// terminal's group reach only kprobe-run, which forwards them itself.
    public init(ownProcessGroup: Bool = false) {
        posix_spawnattr_init(&raw)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&raw, &unblocked)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&raw, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if ownProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&raw, 0)
        }
        posix_spawnattr_setflags(&raw, Int16(flags))
    }

    deinit { posix_spawnattr_destroy(&raw) }
}
