import CLibBPF
import Glibc
import KprobeSupport

/// One run of a probe: the object is loaded at init (so verifier errors surface before anything
/// is attached); `run` attaches every program, streams printk lines and buffer records to stdout
/// until the duration passes, SIGINT/SIGTERM arrives, the `-c` command exits, `--max-events`
/// is reached or stdout closes, then detaches everything and prints the maps (also every
/// `-i` interval). Every path out of `run`, including errors part-way through attaching,
/// destroys the links it made; the object itself is freed with the session.
///
/// printk output: only trace_pipe lines written by bpf_trace_printk are shown, as the bare
/// message in text (like bpftrace) and as `{"type":"printk",…}` in JSON. trace_pipe is global,
/// so lines printed by other BPF programs running at the same time cannot be told apart; lines
/// queued before attach are discarded.
public final class ProbeSession {
    private let options: SessionOptions
    private let object: ProbeObject
    private var started = false

    public init(object bytes: [UInt8], name: String, options: SessionOptions) throws(RuntimeError) {
        self.options = options
        object = try ProbeObject(bytes: bytes, name: name)
        try object.plan(specs: options.attach, requireAttachable: true)
        if let pid = options.targetPID {
            let set = object.setTargetPID(pid)
            if options.verbose {
                options.log(set ? "set \(ProbeObject.pidVariable) = \(pid)" : "the probe declares no 'const volatile int \(ProbeObject.pidVariable)'; pid \(pid) only limits uprobes")
            }
        }
        try object.load()
        if options.verbose {
            options.log("loaded \(name): \(object.programs.count) program(s): \(object.programNames.joined(separator: ", "))")
        }
    }

    public func run() throws(RuntimeError) {
        guard !started else { throw RuntimeError(.internal, "a probe session runs only once") }
        started = true
        var released = false
        defer { if !released { options.command?.abandon() } }
        let verbose = options.verbose, userLog = options.log
        let log: (String) -> Void = { line in if verbose { userLog(line) } }
        let sink = OutputSink()
        let reporter = Reporter(sink: sink, format: options.format, timestamps: options.timestamps, maxEvents: options.maxEvents)
        let signals = try SignalPipe(extra: options.command == nil ? [] : [SIGCHLD])
        defer { signals.restore() }
        let tracefs = Tracefs(log: log)
        let attacher = Attacher(tracefs: tracefs, uprobePID: options.targetPID, log: log)
        defer { attacher.detachAll() }
        let formatter = BTFFormatter(btf: bpf_object__btf(object.handle))
        let stacks = StackResolver(object: object.handle, defaultPID: options.targetPID)
        let maps = MapReader(formatter: formatter, metadata: object.metadata, stacks: stacks)
        if options.format == .folded, stacks.traceMaps.isEmpty {
            StandardError.write("kprobe-run: --format folded prints only maps with stack ids, and this probe has no BPF_MAP_TYPE_STACK_TRACE map: nothing will be printed")
        }

        var tracePipe = TracePipeReader(fd: -1, reporter: reporter)
        defer { if tracePipe.fd >= 0 { close(tracePipe.fd) } }
        if object.programs.contains(where: { $0.usesPrintk && $0.points.contains { $0 != .notAttached } }) {
            tracePipe = TracePipeReader(fd: try tracefs.openTracePipe(), reporter: reporter)
            let stale = tracePipe.discardPending()
            log("reading bpf_printk output from \(try tracefs.path())/trace_pipe" + (stale > 0 ? " (discarded \(stale) earlier line(s))" : ""))
        }

        let buffers = try EventBuffers(object: object.handle, formatter: formatter, metadata: object.metadata, reporter: reporter, log: log)

        for program in object.programs {
            for point in program.points {
                try attacher.attach(program, at: point)
            }
        }

        let start = MonotonicClock.seconds
        reporter.start = start
        if let command = options.command {
            command.release()
            released = true
            log("started '\(command.command)' as pid \(command.pid)")
        }
        let deadline = options.duration.map { start + max(0, $0) }
        log(deadline == nil ? "running until Ctrl-C (SIGINT) or SIGTERM" : "running for \(options.duration!) s")

        // A -p/-c process's mappings are copied while it runs, so that its user stacks can be
        // symbolized after it has exited.
        let rememberTarget = !stacks.traceMaps.isEmpty ? options.targetPID : nil
        var nextRemember = start
        var nextInterval = options.interval.map { start + $0 }
        var lastMapPrint = -Double.infinity
        var commandStatus: TargetCommand.Status?

        var fds: [pollfd] = [pollfd(fd: signals.readFD, events: Int16(POLLIN), revents: 0)]
        if tracePipe.fd >= 0 { fds.append(pollfd(fd: tracePipe.fd, events: Int16(POLLIN), revents: 0)) }
        for fd in buffers.pollFDs { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }

        func printMaps(header: Bool) {
            if header { intervalHeader(reporter: reporter, elapsed: MonotonicClock.seconds - start) }
            for output in reports(maps) {
                for line in output.lines(options.format) { sink.emit(line) }
            }
            lastMapPrint = MonotonicClock.seconds
        }

        loop: while true {
            sink.flush()
            if sink.closed || reporter.limitReached { break }
            let now = MonotonicClock.seconds
            if let pid = rememberTarget, now >= nextRemember {
                stacks.user.remember(pid: pid)
                nextRemember = now + 0.1
            }
            if let due = nextInterval, now >= due {
                printMaps(header: true)
                if options.clearAfterInterval { clearMaps(stacks) }
                nextInterval = due + options.interval!
                while let next = nextInterval, next <= MonotonicClock.seconds { nextInterval = next + options.interval! }
                continue
            }
            if let deadline, now >= deadline { break }
            if let command = options.command, let status = command.exited() {
                commandStatus = status
                log("'\(command.command)' (pid \(command.pid)) exited with status \(status.code)")
                break
            }
            var wake = [deadline, nextInterval].compactMap { $0 }.min()
            if rememberTarget != nil { wake = min(wake ?? nextRemember, nextRemember) }
            var timeout: Int32 = -1
            if let wake { timeout = Int32(min(max(0, wake - now) * 1000 + 1, 3_600_000)) }
            // trace_pipe's poll may wait for its buffer-fill watermark; a short timeout keeps
            // printk lines prompt regardless.
            if tracePipe.fd >= 0, timeout < 0 || timeout > 200 { timeout = 200 }
            // SIGCHLD wakes the loop when the -c command exits; the timeout also catches an
            // exit whose signal went elsewhere.
            if options.command != nil, timeout < 0 || timeout > 500 { timeout = 500 }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(.internal, "poll failed: \(Errno.current)")
            }
            if fds[0].revents != 0 {
                while let signal = signals.take() {
                    guard signal != SIGCHLD else { continue }
                    log("received \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"), stopping")
                    break loop
                }
            }
            if tracePipe.fd >= 0 { tracePipe.drain() }
            if ready > 0 { buffers.consume() }
        }
        if reporter.limitReached { log("stopping after \(reporter.events) event(s) (--max-events)") }
        // In interval mode the maps were just printed when the run ends on an interval (checked
        // before detaching, which can take a while).
        let finalPrint = options.interval == nil || MonotonicClock.seconds - lastMapPrint > 0.05

        attacher.detachAll()
        if !sink.closed {
            buffers.consume()
            if tracePipe.fd >= 0 { tracePipe.drain() }
            if finalPrint {
                printMaps(header: options.interval != nil)
            }
        }
        for (map, count) in buffers.lost {
            StandardError.write("kprobe-run: lost \(count) event(s) from perf buffer '\(map)' (the reader fell behind; a larger buffer or fewer events help)")
            if options.format == .json {
                var line = "{\"type\":\"lost\",\"source\":\"perf_buffer\",\"map\":"
                JSON.writeString(map, into: &line)
                sink.emit(line + ",\"count\":\(count)}")
            }
        }
        if tracePipe.lost > 0 {
            StandardError.write("kprobe-run: trace_pipe lost \(tracePipe.lost) printk line(s)")
            if options.format == .json { sink.emit("{\"type\":\"lost\",\"source\":\"trace_pipe\",\"count\":\(tracePipe.lost)}") }
        }
        if let command = options.command, let status = commandStatus {
            if options.format == .json { sink.emit(status.json) }
            if status.code != 0 {
                StandardError.write("kprobe-run: '\(command.command)' exited with status \(status.code)" + (status.signal.map { " (signal \($0))" } ?? ""))
            }
        }
        sink.flush()
        if let failure = sink.failure {
            throw RuntimeError(.internal, "cannot write to stdout: \(failure)")
        }
    }

    /// Maps in object order.
    private func reports(_ reader: MapReader) -> [MapOutput] {
        var outputs: [MapOutput] = []
        var map = bpf_object__next_map(object.handle, nil)
        while let current = map {
            if let output = reader.report(current) { outputs.append(output) }
            map = bpf_object__next_map(object.handle, current)
        }
        return outputs
    }

    private func clearMaps(_ stacks: StackResolver) {
        var map = bpf_object__next_map(object.handle, nil)
        while let current = map {
            MapReader.clear(current)
            map = bpf_object__next_map(object.handle, current)
        }
        stacks.clear()
    }

    /// BCC tools head each interval with the time of day; JSON gets a line of its own.
    private func intervalHeader(reporter: Reporter, elapsed: Double) {
        switch options.format {
        case .text:
            reporter.sink.emit("")
            reporter.sink.emit(Reporter.clockTime())
        case .json:
            reporter.sink.emit("{\"type\":\"interval\",\"time\":\(Reporter.seconds(elapsed)),\"clock\":\"\(Reporter.clockTime())\"}")
        case .folded:
            break
        }
    }
}
