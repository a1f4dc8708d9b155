import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// Everything that governs a run once the object exists: how long, where to attach, how to print,
/// which process to follow. These options are what the device side of `--adb` runs with, so they
/// live together and are forwarded by `deviceArguments`, the one place that turns them back into a
/// command line (`LoadFlags`, shared with `compile` and `info`, does the same for its own; `Run.deviceArguments`
/// joins the two). A new run-time option goes here, into `deviceArguments`, and into
/// `RunOptionsRoundTripTests.samples` (the test fails until it is in both).
struct RunOptions: ParsableArguments {
    @Option(name: .shortAndLong, parsing: .unconditional, help: ArgumentHelp("Stop after this many seconds.", valueName: "SECONDS"))
    var duration: Double?

    @Option(name: .shortAndLong, help: ArgumentHelp(
        AttachSpec.help,
        valueName: "SPEC"))
    var attach: [String] = []

    @Option(name: .long, help: "Output format: text (for people), json (one object per line) or folded (stacks for flamegraph.pl).")
    var format: OutputFormat = .text

    @Flag(name: [.customShort("T"), .long], help: "Prefix events and printk lines with seconds since attach (a \"time\" field in json).")
    var timestamps = false

    @Option(name: .shortAndLong, parsing: .unconditional, help: ArgumentHelp("Print the maps every SECONDS (and at exit).", valueName: "SECONDS"))
    var interval: Double?

    @Flag(name: .long, help: "With --interval: empty the maps after each print.")
    var clear = false

    @Option(name: .shortAndLong, parsing: .unconditional, help: ArgumentHelp(
        "Follow one process: its pid is the probe's KPROBE_RUN_PID macro and 'const volatile int kprobe_run_pid', and uprobes fire only in it.",
        valueName: "PID"))
    var pid: Int32?

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Run COMMAND once everything is attached (its pid held before the compile), follow it as -p does, and stop when it exits; json ends with {\"type\":\"exit\",\"status\":N}.",
        valueName: "COMMAND"))
    var command: String?

    @Flag(name: .long, help: "With -c: exit with the command's exit status (128 + N when signal N ended it) once the run ends cleanly.")
    var exitWithCommand = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Stop after N events (buffer records and printk lines).", valueName: "N"))
    var maxEvents: Int?

    func validate() throws {
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a positive number of seconds, got \(duration)") }
        if let interval, !(interval > 0) { throw ValidationError("--interval must be a positive number of seconds") }
        if clear, interval == nil { throw ValidationError("--clear needs --interval") }
        if let pid, pid <= 0 { throw ValidationError("-p needs a process id greater than 0") }
        if pid != nil, command != nil { throw ValidationError("-p and -c both name the process to follow: give one") }
        if let maxEvents, maxEvents <= 0 { throw ValidationError("--max-events must be at least 1") }
        if let command, command.trimmingSpaces.isEmpty { throw ValidationError("-c needs a command") }
        if exitWithCommand, command == nil { throw ValidationError("--exit-with-command needs -c COMMAND") }
    }

    /// These options as the arguments of `kprobe-run run OBJECT …` on the device side of --adb.
    var deviceArguments: [String] {
        var arguments: [String] = []
        if let duration { arguments += ["--duration", String(duration)] }
        for spec in attach { arguments += ["--attach", spec] }
        arguments += ["--format", format.rawValue]
        if timestamps { arguments.append("--timestamps") }
        if let interval { arguments += ["--interval", String(interval)] }
        if clear { arguments.append("--clear") }
        if let pid { arguments += ["--pid", String(pid)] }
        if let command { arguments += ["--command", command] }
        if exitWithCommand { arguments.append("--exit-with-command") }
        if let maxEvents { arguments += ["--max-events", String(maxEvents)] }
        return arguments
    }

    /// The probe's view of the followed process, added to the compile's defines.
    static func compileDefines(pid: Int32?) -> [String] {
        pid.map { ["KPROBE_RUN_PID=\($0)"] } ?? []
    }

    /// Starts the -c command held before it runs (nil without -c); its pid is known from here on.
    func startCommand() throws -> TargetCommand? {
        try command.map { try TargetCommand.start($0) }
    }

    /// The session's options from these; `verbose` and `log` come from the compile options.
    func sessionOptions(command started: TargetCommand?, specs: [AttachSpec], verbose: Bool) -> SessionOptions {
        var options = SessionOptions()
        options.attach = specs
        options.duration = duration
        options.format = format
        options.timestamps = timestamps
        options.interval = interval
        options.clearAfterInterval = clear
        options.maxEvents = maxEvents
        options.targetPID = started?.pid ?? pid
        options.command = started
        options.verbose = verbose
        options.log = { line in if verbose { Diagnostics.verbose(line) } }
        return options
    }

    /// The attach specs, checked before any compile work so that a typo costs nothing.
    func attachSpecs() throws -> [AttachSpec] {
        try attach.map { try AttachSpec(parsing: $0) }
    }
}

extension OutputFormat: ExpressibleByArgument {}
