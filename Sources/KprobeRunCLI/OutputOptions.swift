import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// How `run` prints, how long it follows which process: issue 5's flags (docs/output.md).
struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "Output format: text (for people), json (one object per line) or folded (stacks for flamegraph.pl).")
    var format: OutputFormat = .text

    @Flag(name: .customShort("T"), help: "Prefix events and printk lines with seconds since attach (a \"time\" field in json).")
    var timestamps = false

    @Option(name: .shortAndLong, help: ArgumentHelp("Print the maps every SECONDS (and at exit).", valueName: "SECONDS"))
    var interval: Double?

    @Flag(name: .long, help: "With --interval: empty the maps after each print.")
    var clear = false

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Follow one process: its pid is the probe's KPROBE_RUN_PID macro and 'const volatile int kprobe_run_pid', and uprobes fire only in it.",
        valueName: "PID"))
    var pid: Int32?

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Run COMMAND once everything is attached (its pid held before the compile), follow it as -p does, and stop when it exits; json ends with {\"type\":\"exit\",\"status\":N}.",
        valueName: "COMMAND"))
    var command: String?

    @Option(name: .long, help: ArgumentHelp("Stop after N events (buffer records and printk lines).", valueName: "N"))
    var maxEvents: Int?

    func validate() throws {
        if let interval, !(interval > 0) { throw ValidationError("--interval must be a positive number of seconds") }
        if clear, interval == nil { throw ValidationError("--clear needs --interval") }
        if let pid, pid <= 0 { throw ValidationError("-p needs a process id greater than 0") }
        if pid != nil, command != nil { throw ValidationError("-p and -c both name the process to follow: give one") }
        if let maxEvents, maxEvents <= 0 { throw ValidationError("--max-events must be at least 1") }
        if let command, command.trimmingSpaces.isEmpty { throw ValidationError("-c needs a command") }
    }

    /// The probe's view of the followed process, added to the compile's defines.
    static func compileDefines(pid: Int32?) -> [String] {
        pid.map { ["KPROBE_RUN_PID=\($0)"] } ?? []
    }

    /// Starts the -c command held before it runs (nil without -c); its pid is known from here on.
    func startCommand() throws -> TargetCommand? {
        try command.map { try TargetCommand.start($0) }
    }

    func apply(to options: inout SessionOptions, command started: TargetCommand?) {
        options.format = format
        options.timestamps = timestamps
        options.interval = interval
        options.clearAfterInterval = clear
        options.maxEvents = maxEvents
        options.targetPID = started?.pid ?? pid
        options.command = started
    }
}

extension OutputFormat: ExpressibleByArgument {}
