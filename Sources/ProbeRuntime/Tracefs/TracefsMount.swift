import KprobeSupport

/// The mounted tracing filesystem, for stages outside the runtime that read it (the compile of a
/// BCC TRACEPOINT_PROBE reads the tracepoint's format file).
public enum TracefsMount {
    /// The tracefs directory, mounting it at /sys/kernel/tracing when it is not mounted.
    public static func path(log: @escaping @Sendable (String) -> Void) throws(RuntimeError) -> String {
        try Tracefs(log: log).path()
    }
}
