/// What one map prints as, decided once per map by `MapReader` and drawn by an `OutputWriter`.
enum MapContent {
    /// A count table or any other map: rows of keys and values.
    case table(MapReport)
    /// One histogram, or one per key.
    case histograms([Histogram])
    /// A map whose keys or values hold stack ids.
    case stacks(StackReport)
}

/// One output format: every line the session prints goes through here, so a format is one type
/// (bpftrace's Output with its text and JSON subclasses). nil or [] means the format has no line
/// for that item.
protocol OutputWriter {
    /// One ring/perf-buffer record; `labelled` when several maps send records. `time`: `-T`.
    func event(map: String, labelled: Bool, value: Value, time: Double?) -> String?
    /// What frames the same line when a `RecordPlan` writes it (the fast path for streams of
    /// records); nil when the format has no line for events.
    func eventLayout(map: String, labelled: Bool) -> EventLayout?
    func printk(_ line: PrintkLine, time: Double?) -> String?
    func map(_ content: MapContent) -> [String]
    /// Heads each `-i` interval's print; `elapsed` is seconds since attach.
    func intervalHeader(elapsed: Double) -> [String]
    /// Records the kernel or trace_pipe dropped (also reported on stderr in every format).
    func lost(source: String, map: String?, count: UInt64) -> String?
    /// How the `-c` command ended.
    func exit(_ status: TargetCommand.Status) -> String?
    /// Prints nothing without a stack trace map (the session warns).
    var needsStacks: Bool { get }
}

extension OutputWriter {
    var needsStacks: Bool { false }
}

extension OutputFormat {
    /// The one place the format is chosen.
    var writer: any OutputWriter {
        switch self {
        case .text: return TextOutput()
        case .json: return JSONOutput()
        case .folded: return FoldedOutput()
        }
    }
}

/// For people: `field=value` events, aligned tables, BCC-style histograms, symbolized stacks.
struct TextOutput: OutputWriter {
    func event(map: String, labelled: Bool, value: Value, time: Double?) -> String? {
        (time.map { Reporter.seconds($0) + " " } ?? "") + (labelled ? "\(map): " : "") + value.line
    }

    func eventLayout(map: String, labelled: Bool) -> EventLayout? {
        EventLayout(style: .text, timeTail: [UInt8(ascii: " ")], label: labelled ? Array("\(map): ".utf8) : [])
    }

    func printk(_ line: PrintkLine, time: Double?) -> String? {
        (time.map { Reporter.seconds($0) + " " } ?? "") + line.message
    }

    func map(_ content: MapContent) -> [String] {
        switch content {
        case let .table(report): return report.text
        case let .histograms(histograms): return histograms.flatMap(\.text)
        case let .stacks(report): return report.text
        }
    }

    /// BCC tools head each interval with the time of day after an empty line.
    func intervalHeader(elapsed: Double) -> [String] { ["", Reporter.clockTime()] }

    func lost(source: String, map: String?, count: UInt64) -> String? { nil }

    func exit(_ status: TargetCommand.Status) -> String? { nil }
}

/// flamegraph.pl's input: only maps with stacks print, as `comm;frame;…;frame count`.
struct FoldedOutput: OutputWriter {
    func event(map: String, labelled: Bool, value: Value, time: Double?) -> String? { nil }

    func eventLayout(map: String, labelled: Bool) -> EventLayout? { nil }

    func printk(_ line: PrintkLine, time: Double?) -> String? { nil }

    func map(_ content: MapContent) -> [String] {
        if case let .stacks(report) = content { return report.folded }
        return []
    }

    func intervalHeader(elapsed: Double) -> [String] { [] }

    func lost(source: String, map: String?, count: UInt64) -> String? { nil }

    func exit(_ status: TargetCommand.Status) -> String? { nil }

    var needsStacks: Bool { true }
}
