import Glibc
import KprobeSupport

/// What one `ProbeSession.run` holds from setup to teardown. `close` releases it on every path
/// out of the run, errors part-way through setup included: links destroyed, trace_pipe closed,
/// signal handlers restored, a `-c` command that was never let go killed.
final class RunState {
    let options: SessionOptions
    let object: ProbeObject
    let sink = OutputSink()
    let reporter: Reporter
    let tracefs: Tracefs
    let attacher: Attacher
    let stacks: StackResolver
    var mapReader: MapReader
    /// Verbose lines (nothing without -v).
    let log: (String) -> Void
    var signals: SignalPipe?
    var tracePipe: TracePipeReader?
    var buffers: EventBuffers?
    /// Monotonic seconds at attach.
    var start = MonotonicClock.seconds
    var lastMapPrint = -Double.infinity
    /// The -c command was let go; otherwise `close` kills it.
    var released = false

    init(options: SessionOptions, object: ProbeObject) {
        self.options = options
        self.object = object
        let verbose = options.verbose, userLog = options.log
        let log: (String) -> Void = { line in if verbose { userLog(line) } }
        self.log = log
        reporter = Reporter(sink: sink, format: options.format, timestamps: options.timestamps, maxEvents: options.maxEvents)
        tracefs = Tracefs(log: log)
        attacher = Attacher(tracefs: tracefs, uprobePID: options.targetPID, log: log)
        stacks = StackResolver(maps: object.maps, defaultPID: options.targetPID)
        mapReader = MapReader(formatter: BTFFormatter(btf: object.btf), metadata: object.outputMetadata, stacks: stacks)
    }

    func close() {
        if let fd = tracePipe?.fd { Glibc.close(fd) }
        tracePipe = nil
        attacher.detachAll()
        signals?.restore()
        if !released { options.command?.abandon() }
    }

    /// Every map in object order, in the session's format; with `header`, the interval's first.
    func printMaps(header: Bool) {
        let writer = reporter.writer
        if header { reporter.emit(writer.intervalHeader(elapsed: MonotonicClock.seconds - start)) }
        for map in object.maps {
            for content in mapReader.report(map) { reporter.emit(writer.map(content)) }
        }
        lastMapPrint = MonotonicClock.seconds
    }

    /// `--clear`: empties the maps and the stack ids they point to.
    func clearMaps() {
        for map in object.maps { mapReader.clear(map) }
        stacks.clear()
    }
}
