import ArgumentParser
import KprobeSupport
import ProbeRuntime

#if canImport(Glibc)
import Glibc
#endif

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
              kprobe-run -e "$(sed s/vfs_read/vfs_write/ probe.c)" -d 1
              generate-probe | kprobe-run - --format json -o events.json
            """
    )

    @OptionGroup var source: ProbeSource

    @OptionGroup var options: RunOptions

    @Option(name: [.customShort("o"), .long], help: ArgumentHelp(
        "Write results (events, printk lines, maps) to FILE instead of stdout; diagnostics stay on stderr.", valueName: "FILE"))
    var output: String?

    @OptionGroup var load: LoadFlags

    @OptionGroup var compile: CompileOptions

    @OptionGroup var remote: AdbOptions

    /// The device side of --adb runs with the run and load options and -v; the rest is the host's.
    var deviceArguments: [String] {
        options.deviceArguments + load.deviceArguments + (compile.verbose ? ["--verbose"] : [])
    }

    func run() throws {
        let specs = try options.attachSpecs()
        let loadOptions = try load.options()
        let input = try source.load()
        if let serial = remote.requestedSerial {
            try redirectResults()
            try AdbRun(serial: serial, compile: compile).run(input, pid: options.pid, arguments: deviceArguments)
        }
        if let pid = options.pid, kill(pid, 0) != 0, errno == ESRCH {
            throw Failure(.usage, "-p \(pid): no such process")
        }
        // A -c command starts (held) before the compile, so that its pid can be a macro; and
        // before results are redirected, so that its own output still goes where ours went.
        let command = try options.startCommand()
        let session: ProbeSession
        do {
            try redirectResults()
            var sessionOptions = options.sessionOptions(command: command, specs: specs, verbose: compile.verbose)
            sessionOptions.load = loadOptions
            var build = compile
            build.defines += RunOptions.compileDefines(pid: sessionOptions.targetPID)
            session = try ProbeBuild(options: build).loaded(input) { object in
                try ProbeSession(object: object, name: input.name, options: sessionOptions)
            }.loaded
        } catch {
            command?.abandon()
            throw error
        }
        // From here the session owns the command (it lets it go, or abandons it on failure).
        let status = try session.run()
        if options.exitWithCommand, let status { throw ExitStatus(code: status.code) }
    }

    /// `-o FILE`: results go to FILE through stdout's descriptor, so every writer of results (and
    /// the device's output over adb) follows without knowing.
    private func redirectResults() throws {
        guard let output else { return }
        let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let error = Errno.current
            throw Failure(error.isPermission ? .notPermitted : .usage, "-o \(output): cannot open for writing: \(error)")
        }
        defer { close(fd) }
        guard dup2(fd, 1) == 1 else { throw Failure(.internal, "-o \(output): dup2: \(Errno.current)") }
    }
}
