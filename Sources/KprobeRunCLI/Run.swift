import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// `kprobe-run [run] PROBE`: compile (or take a compiled object), attach, report, detach.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a probe (or take a compiled .o), attach every program in it, and print what it reports.",
        discussion: """
            Programs attach by their SEC() names: kprobe/SYM, kretprobe/SYM, tracepoint/CAT/EVENT (tp/), \
            raw_tracepoint/EVENT (raw_tp/), uprobe/PATH:SYM, uretprobe/PATH:SYM, fentry/, fexit/, perf_event. \
            bpf_printk lines, ring- and perf-buffer events are printed as they arrive; every map is printed at exit. \
            Runs until Ctrl-C, SIGTERM or --duration, then detaches everything.

            Examples:
              kprobe-run bpf-examples/opensnoop.c -d 5
              kprobe-run probe.c -a kprobe:vfs_read=trace_read -a tracepoint:sched:sched_switch=on_switch
            """
    )

    @Argument(help: ArgumentHelp("The probe: C source, or a BPF object from `kprobe-run compile`.", valueName: "PROBE"))
    var probe: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Stop after this many seconds.", valueName: "SECONDS"))
    var duration: Double?

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Attach a function explicitly (repeatable): kprobe:SYM=FUNC, kretprobe:SYM=FUNC, tracepoint:CAT:EVENT=FUNC, raw_tracepoint:EVENT=FUNC, uprobe:PATH:SYM=FUNC, uretprobe:PATH:SYM=FUNC.",
        valueName: "SPEC"))
    var attach: [String] = []

    @OptionGroup var output: OutputOptions

    @OptionGroup var load: LoadFlags

    @OptionGroup var compile: CompileOptions

    @OptionGroup var remote: AdbOptions

    func validate() throws {
        if let duration, !(duration > 0) {
            throw ValidationError("--duration must be a positive number of seconds")
        }
    }

    func run() throws {
        if let serial = remote.requestedSerial {
            try AdbRun(serial: serial, compile: compile).run(probe: probe, duration: duration, attach: attach, output: output)
        }
        // Attach specs are checked before any compile work, so a typo costs nothing.
        var specs: [AttachSpec] = []
        for text in attach { specs.append(try AttachSpec(parsing: text)) }
        let loadOptions = try load.options()
        let input = try ProbeInput.load(probe)
        // A -c command starts (held) before the compile, so that its pid can be a macro.
        let command = try output.startCommand()
        var options = SessionOptions()
        output.apply(to: &options, command: command)
        let session: ProbeSession
        do {
            var build = compile
            build.defines += OutputOptions.compileDefines(pid: options.targetPID)
            let object = try ProbeBuild(options: build).object(for: input)
            options.attach = specs
            options.load = loadOptions
            options.duration = duration
            options.verbose = compile.verbose
            let verbose = compile.verbose
            options.log = { line in if verbose { Diagnostics.verbose(line) } }
            session = try ProbeSession(object: object, name: input.name, options: options)
        } catch {
            command?.abandon()
            throw error
        }
        try session.run()
    }
}
