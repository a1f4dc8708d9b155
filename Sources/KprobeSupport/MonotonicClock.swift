#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC, for durations in -v lines and for -T and -i timing: a wall clock set
/// backwards (NTP, a user) must not give negative or jumping times.
public enum MonotonicClock {
    public static var now: timespec {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts
    }

    /// `now` in seconds, for interval arithmetic.
    public static var seconds: Double {
        let ts = now
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public static func milliseconds(since start: timespec) -> Int {
        let end = now
        return (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1_000_000
    }
}
