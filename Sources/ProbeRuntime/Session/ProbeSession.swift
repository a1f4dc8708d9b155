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
        guard !object.programs.isEmpty else {
            throw RuntimeError(.usage, "\(name) has no programs to attach: define functions with SEC(\"kprobe/…\"), SEC(\"tracepoint/…\"), … (or BCC's kprobe__… names)")
        }
        let verbose = options.verbose, userLog = options.log
        let log: (String) -> Void = { line in if verbose { userLog(line) } }
        try object.prepare(specs: options.attach, options: options.load, requireAttachable: true, log: log)
        if let pid = options.targetPID {
            let set = object.setTargetPID(pid)
            log(set ? "set \(ProbeObject.pidVariable) = \(pid)" : "the probe declares no 'const volatile int \(ProbeObject.pidVariable)'; pid \(pid) only limits uprobes")
        }
        try object.load()
        log("loaded \(name): \(object.programNames.count) program(s): \(object.programNames.joined(separator: ", "))")
    }

    /// Setup, poll loop, teardown (bpftrace's split); `RunState.close` undoes setup on every path.
    /// Returns how the `-c` command ended, when it ended during the run.
    @discardableResult
    public func run() throws(RuntimeError) -> TargetCommand.Status? {
        guard !started else { throw RuntimeError(.internal, "a probe session runs only once") }
        started = true
        let run = RunState(options: options, object: object)
        defer { run.close() }
        try setup(run)
        let commandStatus = try poll(run)
        try teardown(run, commandStatus: commandStatus)
        return commandStatus
    }

    /// Output, signals, trace_pipe and buffer readers, then every attach point; then the `-c`
    /// command is let go and the clock starts.
    private func setup(_ run: RunState) throws(RuntimeError) {
        let signals = try SignalPipe(extra: options.command == nil ? [] : [SIGCHLD])
        run.signals = signals
        if run.reporter.writer.needsStacks, run.stacks.traceMaps.isEmpty {
            StandardError.write("kprobe-run: --format \(options.format) prints only maps with stack ids, and this probe has no BPF_MAP_TYPE_STACK_TRACE map: nothing will be printed")
        }
        if object.programs.contains(where: { $0.usesPrintk && $0.points.contains { $0 != .notAttached } }) {
            var tracePipe = TracePipeReader(fd: try run.tracefs.openTracePipe(), reporter: run.reporter)
            run.tracePipe = tracePipe
            let stale = tracePipe.discardPending()
            run.tracePipe = tracePipe
            run.log("reading bpf_printk output from \(try run.tracefs.path())/trace_pipe" + (stale > 0 ? " (discarded \(stale) earlier line(s))" : ""))
        }
        let buffers = try EventBuffers(maps: object.maps, formatter: run.mapReader.formatter, metadata: object.metadata,
                                       reporter: run.reporter, log: run.log)
        run.buffers = buffers
        run.mapReader.recordTypes = buffers.recordTypes
        for program in object.programs {
            for point in program.points {
                try run.attacher.attach(program, at: point)
            }
        }
        run.start = MonotonicClock.seconds
        run.reporter.start = run.start
        if let command = options.command {
            command.release()
            run.released = true
            run.log("started '\(command.command)' as pid \(command.pid)")
        }
        run.log(options.duration.map { "running for \($0) s" } ?? "running until Ctrl-C (SIGINT) or SIGTERM")
    }

    /// Waits for records, printk lines, signals and timers until the run ends; returns how the
    /// `-c` command ended when that ended the run.
    private func poll(_ run: RunState) throws(RuntimeError) -> TargetCommand.Status? {
        guard let signals = run.signals, let buffers = run.buffers else { return nil }
        let start = run.start
        let deadline = options.duration.map { start + max(0, $0) }
        // A -p/-c process's mappings are copied while it runs, so that its user stacks can be
        // symbolized after it has exited.
        let rememberTarget = !run.stacks.traceMaps.isEmpty ? options.targetPID : nil
        var nextRemember = start
        var nextInterval = options.interval.map { start + $0 }
        var fds: [pollfd] = [pollfd(fd: signals.readFD, events: Int16(POLLIN), revents: 0)]
        if let tracePipe = run.tracePipe { fds.append(pollfd(fd: tracePipe.fd, events: Int16(POLLIN), revents: 0)) }
        for fd in buffers.pollFDs { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        // stdout, while output waits for the reader to make room (`OutputSink.pollFD`).
        let output = fds.count
        fds.append(pollfd(fd: -1, events: Int16(POLLOUT), revents: 0))
        // The last turn read records.
        var streaming = false

        while true {
            // While records stream in, output leaves in 256 KiB writes (or before the loop naps,
            // or when the reader has made room) rather than a small write per turn, each of
            // which would wake the reader.
            if !streaming || fds[output].revents != 0 { run.sink.send() }
            if run.sink.closed || run.reporter.limitReached { break }
            fds[output].fd = run.sink.pollFD
            let now = MonotonicClock.seconds
            if let pid = rememberTarget, now >= nextRemember {
                run.stacks.user.remember(pid: pid)
                nextRemember = now + 0.1
            }
            if let due = nextInterval, let interval = options.interval, now >= due {
                run.printMaps(header: true)
                if options.clearAfterInterval { run.clearMaps() }
                nextInterval = due + interval
                while let next = nextInterval, next <= MonotonicClock.seconds { nextInterval = next + interval }
                continue
            }
            if let deadline, now >= deadline { break }
            if let command = options.command, let status = command.exited() {
                run.log("'\(command.command)' (pid \(command.pid)) exited with status \(status.code)")
                return status
            }
            var wake = [deadline, nextInterval].compactMap { $0 }.min()
            if rememberTarget != nil { wake = min(wake ?? nextRemember, nextRemember) }
            var timeout: Int32 = -1
            if let wake { timeout = Int32(min(max(0, wake - now) * 1000 + 1, 3_600_000)) }
            // trace_pipe's poll may wait for its buffer-fill watermark; a short timeout keeps
            // printk lines prompt regardless.
            if run.tracePipe != nil, timeout < 0 || timeout > 200 { timeout = 200 }
            // Perf buffers wake the loop only once a watermark has filled.
            if buffers.hasPerfBuffers, timeout < 0 || timeout > EventBuffers.perfLatency { timeout = EventBuffers.perfLatency }
            // SIGCHLD wakes the loop when the -c command exits; the timeout also catches an
            // exit whose signal went elsewhere.
            if options.command != nil, timeout < 0 || timeout > 500 { timeout = 500 }
            var ready = Glibc.poll(&fds, nfds_t(fds.count), streaming ? 0 : timeout)
            if streaming, ready == 0 {
                // Records came in the last turn and none are waiting: rather than a wake-up per
                // record (a context switch on both sides each), let the next ones collect.
                run.sink.send()
                fds[output].fd = run.sink.pollFD
                let nap = timeout < 0 ? Self.streamingNap : min(Self.streamingNap, Int(timeout) * 1000)
                var pause = timespec(tv_sec: 0, tv_nsec: nap * 1000)
                nanosleep(&pause, nil)
                ready = Glibc.poll(&fds, nfds_t(fds.count), 0)
            }
            if ready < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(.internal, "poll failed: \(Errno.current)")
            }
            if fds[0].revents != 0, let signal = Self.stopSignal(signals) {
                run.log("received \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"), stopping")
                break
            }
            run.tracePipe?.drain()
            streaming = buffers.consume()
        }
        if run.reporter.limitReached { run.log("stopping after \(run.reporter.events) event(s) (--max-events)") }
        return nil
    }

    /// Microseconds a busy stream of records is left to collect before the next read: at most this
    /// much latency, at most one wake-up per this much time, and room to spare in the buffers (a
    /// 256 KiB buffer of 64-byte records fills in a millisecond at 4 million records a second).
    private static let streamingNap = 500

    /// The first signal that stops the run (SIGCHLD only wakes the loop).
    private static func stopSignal(_ signals: SignalPipe) -> Int32? {
        while let signal = signals.take() {
            if signal != SIGCHLD { return signal }
        }
        return nil
    }

    /// Detaches, reads what is still queued, prints the maps a last time and reports losses.
    private func teardown(_ run: RunState, commandStatus: TargetCommand.Status?) throws(RuntimeError) {
        // In interval mode the maps were just printed when the run ends on an interval (checked
        // before detaching, which can take a while).
        let finalPrint = options.interval == nil || MonotonicClock.seconds - run.lastMapPrint > 0.05
        run.attacher.detachAll()
        if !run.sink.closed {
            run.buffers?.consume()
            run.tracePipe?.drain()
            if finalPrint { run.printMaps(header: options.interval != nil) }
        }
        for (map, count) in run.buffers?.receivedPerMap ?? [] { run.log("read \(count) record(s) from '\(map)'") }
        let writer = run.reporter.writer
        for (map, count) in run.buffers?.lost ?? [] {
            StandardError.write("kprobe-run: lost \(count) event(s) from perf buffer '\(map)' (the reader fell behind; a larger buffer or fewer events help)")
            run.reporter.emit(writer.lost(source: "perf_buffer", map: map, count: count).map { [$0] } ?? [])
        }
        if let lost = run.tracePipe?.lost, lost > 0 {
            StandardError.write("kprobe-run: trace_pipe lost \(lost) printk line(s)")
            run.reporter.emit(writer.lost(source: "trace_pipe", map: nil, count: lost).map { [$0] } ?? [])
        }
        if let command = options.command, let status = commandStatus {
            run.reporter.emit(writer.exit(status).map { [$0] } ?? [])
            if status.code != 0 {
                StandardError.write("kprobe-run: '\(command.command)' exited with status \(status.code)" + (status.signal.map { " (signal \($0))" } ?? ""))
            }
        }
        run.sink.flush()
        if let failure = run.sink.failure {
            throw RuntimeError(.internal, "cannot write to stdout: \(failure)")
        }
    }
}
