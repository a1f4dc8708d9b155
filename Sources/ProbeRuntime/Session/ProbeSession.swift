import CLibBPF
import Glibc
import KprobeSupport

/// One run of a probe: the object is loaded at init (so verifier errors surface before anything
/// is attached); `run` attaches every program, streams printk lines and buffer records to stdout
/// until the duration passes or SIGINT/SIGTERM arrives (or stdout closes), then detaches
/// everything and prints the maps. Every path out of `run`, including errors part-way through
/// attaching, destroys the links it made; the object itself is freed with the session.
///
/// printk output: only trace_pipe lines written by bpf_trace_printk are shown, as the bare
/// message in text (like bpftrace) and as `{"type":"printk","message":…,"comm":…,"pid":…,
/// "cpu":…,"timestamp":…}` in JSON. trace_pipe is global, so lines printed by other BPF
/// programs running at the same time cannot be told apart; lines queued before attach are
/// discarded.
public final class ProbeSession {
    private let options: SessionOptions
    private let object: ProbeObject
    private var started = false

    public init(object bytes: [UInt8], name: String, options: SessionOptions) throws(RuntimeError) {
        self.options = options
        object = try ProbeObject(bytes: bytes, name: name)
        try object.plan(specs: options.attach, requireAttachable: true)
        try object.load()
        if options.verbose {
            options.log("loaded \(name): \(object.programs.count) program(s): \(object.programNames.joined(separator: ", "))")
        }
    }

    public func run() throws(RuntimeError) {
        guard !started else { throw RuntimeError(.internal, "a probe session runs only once") }
        started = true
        let verbose = options.verbose, userLog = options.log
        let log: (String) -> Void = { line in if verbose { userLog(line) } }
        let sink = OutputSink()
        let signals = try SignalPipe()
        defer { signals.restore() }
        let tracefs = Tracefs(log: log)
        let attacher = Attacher(tracefs: tracefs, log: log)
        defer { attacher.detachAll() }
        let formatter = BTFFormatter(btf: bpf_object__btf(object.handle))

        var tracePipe = TracePipeReader(fd: -1, sink: sink, format: options.format)
        defer { if tracePipe.fd >= 0 { close(tracePipe.fd) } }
        if object.programs.contains(where: { $0.usesPrintk && $0.points.contains { $0 != .notAttached } }) {
            tracePipe = TracePipeReader(fd: try tracefs.openTracePipe(), sink: sink, format: options.format)
            let stale = tracePipe.discardPending()
            log("reading bpf_printk output from \(try tracefs.path())/trace_pipe" + (stale > 0 ? " (discarded \(stale) earlier line(s))" : ""))
        }

        let buffers = try EventBuffers(object: object.handle, formatter: formatter, sink: sink, format: options.format, log: log)

        for program in object.programs {
            for point in program.points {
                try attacher.attach(program, at: point)
            }
        }
        if attacher.links.isEmpty {
            log("no program was attached; only the maps will be printed")
        }

        let deadline = options.duration.map { Monotonic.now + max(0, $0) }
        log(deadline == nil ? "running until Ctrl-C (SIGINT) or SIGTERM" : "running for \(options.duration!) s")

        var fds: [pollfd] = [pollfd(fd: signals.readFD, events: Int16(POLLIN), revents: 0)]
        if tracePipe.fd >= 0 { fds.append(pollfd(fd: tracePipe.fd, events: Int16(POLLIN), revents: 0)) }
        for fd in buffers.pollFDs { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }

        loop: while true {
            sink.flush()
            if sink.closed { break }
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - Monotonic.now
                if left <= 0 { break }
                timeout = Int32(min(left * 1000 + 1, 3_600_000))
            }
            // trace_pipe's poll may wait for its buffer-fill watermark; a short timeout keeps
            // printk lines prompt regardless.
            if tracePipe.fd >= 0, timeout < 0 || timeout > 200 { timeout = 200 }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(.internal, "poll failed: \(Errno.current)")
            }
            if fds[0].revents != 0, let signal = signals.take() {
                log("received \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"), stopping")
                break loop
            }
            if tracePipe.fd >= 0 { tracePipe.drain() }
            if ready > 0 { buffers.consume() }
        }

        attacher.detachAll()
        if !sink.closed {
            buffers.consume()
            if tracePipe.fd >= 0 { tracePipe.drain() }
            for report in object.mapReports(formatter: formatter) {
                switch options.format {
                case .text: for line in report.text { sink.emit(line) }
                case .json: sink.emit(report.json)
                }
            }
            sink.flush()
        }
        buffers.reportLost()
        if tracePipe.lost > 0 { StandardError.write("kprobe-run: trace_pipe lost \(tracePipe.lost) printk line(s)") }
        if let failure = sink.failure {
            throw RuntimeError(.internal, "cannot write to stdout: \(failure)")
        }
    }
}

extension ProbeObject {
    /// Maps in object order, each printed once at exit.
    func mapReports(formatter: BTFFormatter) -> [MapReport] {
        let reader = MapReader(formatter: formatter)
        var reports: [MapReport] = []
        var map = bpf_object__next_map(handle, nil)
        while let current = map {
            if let report = reader.report(current) { reports.append(report) }
            map = bpf_object__next_map(handle, current)
        }
        return reports
    }
}

enum Monotonic {
    static var now: Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
