import Glibc
import KprobeSupport

/// Writes events and printk lines through the session's `OutputWriter`, with `-T` times and the
/// `--max-events` count (folded output has no line for them, but they still count).
final class Reporter {
    let sink: OutputSink
    let writer: any OutputWriter
    let timestamps: Bool
    let maxEvents: Int?
    /// Monotonic seconds at which the programs were attached: `-T` times count from here.
    var start: Double = MonotonicClock.seconds
    private(set) var events = 0

    init(sink: OutputSink, format: OutputFormat, timestamps: Bool, maxEvents: Int?) {
        self.sink = sink
        writer = format.writer
        self.timestamps = timestamps
        self.maxEvents = maxEvents
    }

    var limitReached: Bool { maxEvents.map { events >= $0 } ?? false }

    /// One ring/perf-buffer record; `label` prefixes text lines when several maps send records.
    func event(map: String, label: Bool, value: Value) {
        guard count() else { return }
        if let line = writer.event(map: map, labelled: label, value: value, time: eventTime) { sink.emit(line) }
    }

    /// A record printed through its type's plan, else decoded by `decode` and printed as `Value`.
    func event(map: String, label: Bool, plan: RecordPlan, record: UnsafeRawBufferPointer, decode: () -> Value) {
        guard count() else { return }
        let time = timestamps ? elapsed : 0
        if sink.emit(maxLength: plan.maxLength, { plan.write(record, time: time, to: $0) }) { return }
        if let line = writer.event(map: map, labelled: label, value: decode(), time: timestamps ? time : nil) { sink.emit(line) }
    }

    func printk(_ line: PrintkLine) {
        guard count() else { return }
        if let text = writer.printk(line, time: eventTime) { sink.emit(text) }
    }

    /// Lines that are not events: maps, interval headers, losses, the command's exit.
    func emit(_ lines: [String]) {
        for line in lines { sink.emit(line) }
    }

    private func count() -> Bool {
        guard !limitReached else { return false }
        events += 1
        return true
    }

    var elapsed: Double { max(0, MonotonicClock.seconds - start) }

    private var eventTime: Double? { timestamps ? elapsed : nil }

    /// Seconds with microseconds, `12.345678`.
    static func seconds(_ value: Double) -> String {
        let micros = Int64((max(0, value) * 1_000_000).rounded())
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }

    /// Local wall-clock time `HH:MM:SS`, as BCC tools head each interval.
    static func clockTime() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}
