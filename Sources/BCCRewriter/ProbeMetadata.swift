import FoundationEssentials

/// What the runtime needs to know about a rewritten BCC program that the BPF object alone does
/// not say. Stored in the object as JSON in the section `.kprobe_run.meta`.
public struct ProbeMetadata: Codable, Sendable, Equatable {
    public static let sectionName = ".kprobe_run.meta"

    /// Perf or ring buffer map name → C type of its records ("struct data_t"), as the program
    /// submits them (the pointee type of the pointer given to perf_submit / ringbuf_output, or
    /// of the pointer the result of ringbuf_reserve is stored in).
    public var events: [String: String]
    /// BPF_HISTOGRAM map name → "log2" (the program computes keys with bpf_log2l/bpf_log2)
    /// or "linear".
    public var histograms: [String: String]
    /// BPF_STACK_TRACE map names.
    public var stackTraces: [String]
    /// Every table: name → BCC table kind ("hash", "array", "histogram", "perf_output",
    /// "ringbuf", "stacktrace", "percpu_hash", …).
    public var tables: [String: String]
    /// Every program: function name → ELF section. A bare "kprobe", "perf_event" or "socket"
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

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes the contents of a `.kprobe_run.meta` section (trailing NUL bytes allowed).
    public static func decode(section bytes: [UInt8]) -> ProbeMetadata? {
        var trimmed = bytes
        while trimmed.last == 0 { trimmed.removeLast() }
        return try? JSONDecoder().decode(ProbeMetadata.self, from: Data(trimmed))
    }

    /// The C definition that carries this metadata into the object.
    func cDefinition() -> String {
        var literal = "\""
        for byte in json().utf8 {
            switch byte {
            case UInt8(ascii: "\""): literal += "\\\""
            case UInt8(ascii: "\\"): literal += "\\\\"
            case 0x20..<0x7F: literal += String(UnicodeScalar(byte))
            default: literal += "\\" + String(byte, radix: 8).leftPadded(to: 3)
            }
        }
        literal += "\""
        return "static const char __kprobe_run_meta[] __attribute__((section(\"\(ProbeMetadata.sectionName)\"), used)) = \(literal);"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
