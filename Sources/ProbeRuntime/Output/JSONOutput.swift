import KprobeSupport

/// One JSON object per line; every line starts with its `"type"`:
/// `{"type":"event","time":…,"map":…,"data":…}` (`time` only with -T),
/// `{"type":"printk","time":…,"message":…,"comm":…,"pid":…,"cpu":…,"timestamp":…}`,
/// `{"type":"map","name":…,"entries":[{"key":…,"value":…,"stacks":{…}},…]}`,
/// `{"type":"histogram","name":…,"kind":"log2","key":…,"buckets":[{"low":…,"high":…,"count":…}]}`,
/// `{"type":"interval","time":…,"clock":"HH:MM:SS"}`, `{"type":"lost","source":…,"map":…,"count":…}`,
/// `{"type":"exit","status":N,"signal":S}`.
struct JSONOutput: OutputWriter {
    func event(map: String, labelled: Bool, value: Value, time: Double?) -> String? {
        var line = JSONLine(type: "event")
        if let time { line.field("time", raw: Reporter.seconds(time)) }
        line.field("map", map)
        line.field("data", value)
        return line.text
    }

    func event(map: String, labelled: Bool, plan: RecordPlan, record: UnsafeRawBufferPointer, time: Double?,
               into out: inout [UInt8]) -> Bool {
        out.append(contentsOf: JSONOutput.eventStart)
        if let time { out.append(contentsOf: (",\"time\":" + Reporter.seconds(time)).utf8) }
        out.append(contentsOf: mapFields.bytes(for: map))
        guard plan.writeJSON(record, into: &out) else { return false }
        out.append(UInt8(ascii: "}"))
        return true
    }

    private static let eventStart = Array(#"{"type":"event""#.utf8)
    private let mapFields = MapFields()

    /// `,"map":"NAME","data":` of the last map, so that a stream of records builds it once.
    private final class MapFields {
        private var map = ""
        private var cached: [UInt8] = []

        func bytes(for name: String) -> [UInt8] {
            if name != map || cached.isEmpty {
                map = name
                cached = Array(",\"map\":\(JSON.string(name)),\"data\":".utf8)
            }
            return cached
        }
    }

    /// `timestamp` is the kernel's trace clock text, `time` (with -T) seconds since attach.
    func printk(_ printk: PrintkLine, time: Double?) -> String? {
        var line = JSONLine(type: "printk")
        if let time { line.field("time", raw: Reporter.seconds(time)) }
        line.field("message", printk.message)
        line.field("comm", printk.task)
        if let pid = printk.pid { line.field("pid", raw: String(pid)) }
        if let cpu = printk.cpu { line.field("cpu", raw: String(cpu)) }
        line.field("timestamp", printk.timestamp)
        return line.text
    }

    func map(_ content: MapContent) -> [String] {
        switch content {
        case let .table(report):
            return [mapLine(name: report.name, entries: report.entries) { _, _ in }]
        case let .histograms(histograms):
            return histograms.map(histogram)
        case let .stacks(report):
            return [mapLine(name: report.name, entries: report.entries.map { ($0.key, $0.value) }) { index, line in
                var stacks = JSONLine()
                for stack in report.entries[index].stacks {
                    switch stack.frames {
                    case let .success(frames): stacks.field(stack.label, strings: frames.map(\.text))
                    case .failure: stacks.field(stack.label, raw: "null")
                    }
                }
                line.field("stacks", raw: stacks.text)
            }]
        }
    }

    /// The buckets are the rows the text shows; `key` only for per-key histograms.
    func histogram(_ histogram: Histogram) -> String {
        var line = JSONLine(type: "histogram")
        line.field("name", histogram.name)
        line.field("kind", histogram.kind.rawValue)
        if let key = histogram.key { line.field("key", key) }
        if let labels = histogram.labels { line.field("labels", labels) }
        if let unit = histogram.unit { line.field("unit", unit) }
        line.field("buckets", raw: "[" + histogram.rows.map { row in
            var bucket = JSONLine()
            bucket.field("low", raw: String(row.low))
            bucket.field("high", raw: String(row.high))
            bucket.field("count", raw: String(row.count))
            return bucket.text
        }.joined(separator: ",") + "]")
        return line.text
    }

    /// `extra` adds fields to entry `index` after its value.
    private func mapLine(name: String, entries: [(key: Value, value: Value)],
                         extra: (_ index: Int, _ line: inout JSONLine) -> Void) -> String {
        var line = JSONLine(type: "map")
        line.field("name", name)
        line.field("entries", raw: "[" + entries.indices.map { index in
            var entry = JSONLine()
            entry.field("key", entries[index].key)
            entry.field("value", entries[index].value)
            extra(index, &entry)
            return entry.text
        }.joined(separator: ",") + "]")
        return line.text
    }

    func intervalHeader(elapsed: Double) -> [String] {
        var line = JSONLine(type: "interval")
        line.field("time", raw: Reporter.seconds(elapsed))
        line.field("clock", Reporter.clockTime())
        return [line.text]
    }

    func lost(source: String, map: String?, count: UInt64) -> String? {
        var line = JSONLine(type: "lost")
        line.field("source", source)
        if let map { line.field("map", map) }
        line.field("count", raw: String(count))
        return line.text
    }

    func exit(_ status: TargetCommand.Status) -> String? {
        var line = JSONLine(type: "exit")
        line.field("status", raw: String(status.code))
        if let signal = status.signal { line.field("signal", raw: String(signal)) }
        return line.text
    }
}

/// The one builder of JSON objects: fields in the order they are added, values escaped by
/// `JSON.writeString` and `Value.writeJSON`.
public struct JSONLine {
    private var body = ""

    public init() {}

    init(type: String) { field("type", type) }

    public var text: String { "{" + body + "}" }

    private mutating func key(_ name: String) {
        if !body.isEmpty { body += "," }
        JSON.writeString(name, into: &body)
        body += ":"
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        JSON.writeString(value, into: &body)
    }

    mutating func field(_ name: String, _ value: Value) {
        key(name)
        value.writeJSON(into: &body)
    }

    mutating func field(_ name: String, strings: [String]) {
        key(name)
        body += "[" + strings.map(JSON.string).joined(separator: ",") + "]"
    }

    /// Already JSON: a number, `null`, or a nested object or array.
    mutating func field(_ name: String, raw: String) {
        key(name)
        body += raw
    }
}
