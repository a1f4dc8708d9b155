/// What the runtime needs to know about a compiled probe that the BPF object alone does not say.
/// Stored in the object as JSON in the section `.kprobe_run.meta`: the BCC front end writes it
/// for rewritten programs, the compiler worker for libbpf-style ones (the record types it found),
/// and the runtime decodes it as this Codable type (with Foundation's JSONDecoder; the worker
/// writes it with `json()` so that it need not load Foundation).
public struct ProbeMetadata: Codable, Sendable, Equatable {
    public static let sectionName = ".kprobe_run.meta"

    /// Perf or ring buffer map name → C type of its records ("struct data_t"), as the program
    /// submits them. The type is in the object's BTF. A record may be shorter than the type
    /// (a variable-length tail such as execsnoop's args): the size each record arrives with counts.
    public var events: [String: String]
    /// BPF_HISTOGRAM map name → "log2" (the program computes keys with bpf_log2l/bpf_log2)
    /// or "linear".
    public var histograms: [String: String]
    /// BPF_STACK_TRACE map names.
    public var stackTraces: [String]
    /// Every BCC table: name → BCC table kind ("hash", "array", "histogram", "perf_output",
    /// "ringbuf", "stacktrace", "percpu_hash", …).
    public var tables: [String: String]
    /// Every BCC program: function name → ELF section. A bare "kprobe", "perf_event" or "socket"
    /// section means the function has no conventional name and must be attached explicitly.
    public var programs: [String: String]

    public init(events: [String: String] = [:], histograms: [String: String] = [:], stackTraces: [String] = [],
                tables: [String: String] = [:], programs: [String: String] = [:]) {
        self.events = events
        self.histograms = histograms
        self.stackTraces = stackTraces
        self.tables = tables
        self.programs = programs
    }

    private enum CodingKeys: String, CodingKey {
        case events, histograms, stackTraces, tables, programs
    }

    /// A field a writer left out is empty.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        events = try container.decodeIfPresent([String: String].self, forKey: .events) ?? [:]
        histograms = try container.decodeIfPresent([String: String].self, forKey: .histograms) ?? [:]
        stackTraces = try container.decodeIfPresent([String].self, forKey: .stackTraces) ?? []
        tables = try container.decodeIfPresent([String: String].self, forKey: .tables) ?? [:]
        programs = try container.decodeIfPresent([String: String].self, forKey: .programs) ?? [:]
    }

    /// Compact JSON with sorted keys, as JSONEncoder's `.sortedKeys` writes it: the same object
    /// always gives the same bytes (the compile cache compares objects).
    public func json() -> String {
        let string = JSON.string
        func map(_ values: [String: String]) -> String {
            "{" + values.sorted { $0.key < $1.key }.map { string($0.key) + ":" + string($0.value) }.joined(separator: ",") + "}"
        }
        let fields: [(CodingKeys, String)] = [
            (.events, map(events)), (.histograms, map(histograms)), (.programs, map(programs)),
            (.stackTraces, "[" + stackTraces.map(string).joined(separator: ",") + "]"), (.tables, map(tables)),
        ]
        return "{" + fields.sorted { $0.0.rawValue < $1.0.rawValue }.map { string($0.0.rawValue) + ":" + $0.1 }.joined(separator: ",") + "}"
    }
}
