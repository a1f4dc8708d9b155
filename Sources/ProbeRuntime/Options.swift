import KprobeSupport

/// How events and maps are written to stdout.
public enum OutputFormat: String, Sendable, CaseIterable {
    /// `field=value` lines and aligned map tables.
    case text
    /// One JSON object per line: `{"type":"event",…}`, `{"type":"printk",…}`, `{"type":"map",…}`.
    case json
}

/// What a `ProbeSession` does besides loading the object.
public struct SessionOptions: Sendable {
    /// Explicit attach points (`-a/--attach`); a program named here is attached only there.
    public var attach: [AttachSpec] = []
    /// Seconds to run (`-d`); nil runs until SIGINT or SIGTERM.
    public var duration: Double? = nil
    /// Report attach points, tracefs mounts and perf events through `log`.
    public var verbose: Bool = false
    public var format: OutputFormat = .text
    /// Where verbose lines go (the CLI writes them to stderr).
    public var log: @Sendable (String) -> Void = { _ in }

    public init() {}
}
