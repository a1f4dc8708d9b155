import KprobeSupport

/// How events and maps are written to stdout (README "Output" describes every line; each
/// format is one `OutputWriter`).
public enum OutputFormat: String, Sendable, CaseIterable {
    /// `field=value` lines, aligned map tables, histograms with bars, symbolized stacks.
    case text
    /// One JSON object per line: `{"type":"event",…}`, `{"type":"printk",…}`, `{"type":"map",…}`,
    /// `{"type":"histogram",…}`, `{"type":"interval",…}`, `{"type":"lost",…}`, `{"type":"exit",…}`.
    case json
    /// Folded stacks (`comm;frame;frame count`), flamegraph.pl's input; only stack maps print.
    case folded
}

/// What a `ProbeSession` does besides loading the object.
public struct SessionOptions: Sendable {
    /// Explicit attach points (`-a/--attach`); a program named here is attached only there.
    public var attach: [AttachSpec] = []
    /// Map sizes, parameters and program choice (`--map-size`, `--set`, `--only`, `--skip`).
    public var load = LoadOptions()
    /// Seconds to run (`-d`); nil runs until SIGINT or SIGTERM (or the `-c` command exits).
    public var duration: Double? = nil
    /// Report attach points, tracefs mounts and perf events through `log`.
    public var verbose: Bool = false
    public var format: OutputFormat = .text
    /// `-T`: seconds since the programs were attached, on every event and printk line.
    public var timestamps: Bool = false
    /// `-i`: print the maps every this many seconds, not only at exit.
    public var interval: Double? = nil
    /// `--clear`: empty the maps after each interval's print.
    public var clearAfterInterval: Bool = false
    /// Stop after this many events (ring/perf-buffer records and printk lines together).
    public var maxEvents: Int? = nil
    /// `-p`: the process the probe is about: written to `kprobe_run_pid` and uprobes limited to it.
    public var targetPID: Int32? = nil
    /// `-c`: a command started stopped (its pid is `targetPID`), released once everything is
    /// attached; the session ends when it exits.
    public var command: TargetCommand? = nil
    /// Where verbose lines go (the CLI writes them to stderr).
    public var log: @Sendable (String) -> Void = { _ in }

    public init() {}
}
