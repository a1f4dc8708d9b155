import Glibc
import KprobeSupport

/// Writes events and printk lines in the session's format, with `-T` times and the
/// `--max-events` count. Folded output carries only stacks, so events are not printed there.
final class Reporter {
    let sink: OutputSink
    let format: OutputFormat
    let timestamps: Bool
    let maxEvents: Int?
    /// Monotonic seconds at which the programs were attached: `-T` times count from here.
    var start: Double = MonotonicClock.seconds
    private(set) var events = 0

    init(sink: OutputSink, format: OutputFormat, timestamps: Bool, maxEvents: Int?) {
        self.sink = sink
        self.format = format
        self.timestamps = timestamps
        self.maxEvents = maxEvents
    }

    var limitReached: Bool { maxEvents.map { events >= $0 } ?? false }

    /// One ring/perf-buffer record; `label` prefixes text lines when several maps send records.
    func event(map: String, label: Bool, value: Value) {
        guard count() else { return }
        switch format {
        case .text:
            sink.emit(textTime() + (label ? "\(map): " : "") + value.line)
        case .json:
            var out = "{\"type\":\"event\"" + jsonTime() + ",\"map\":"
            JSON.writeString(map, into: &out)
            out += ",\"data\":"
            value.writeJSON(into: &out)
            out += "}"
            sink.emit(out)
        case .folded:
            break
        }
    }

    func printk(_ line: PrintkLine) {
        guard count() else { return }
        switch format {
        case .text: sink.emit(textTime() + line.message)
        case .json: sink.emit(line.json(time: timestamps ? elapsed : nil))
        case .folded: break
        }
    }

    private func count() -> Bool {
        guard !limitReached else { return false }
        events += 1
        return true
    }

    var elapsed: Double { max(0, MonotonicClock.seconds - start) }

    private func textTime() -> String {
        timestamps ? Reporter.seconds(elapsed) + " " : ""
    }

    private func jsonTime() -> String {
        timestamps ? ",\"time\":" + Reporter.seconds(elapsed) : ""
    }

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
