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
    /// libbpf-style histograms: a struct with an integer array member `slots` (libbpf-tools'
    /// `struct hist`, spelled "struct hist") → "log2" when the program computes a slot index
    /// with a log2 function (`log2l(delta)`), "linear" when it indexes by a plain number
    /// (runqlen's queue length). A struct the compiler could not judge is not listed (log2).
    /// Also a global integer array indexed by a log2 (funclatency's `__u32 hist[]`), by its
    /// name ("hist" → "log2"); `slotUnits` and `slotSteps` use the same keys.
    public var slots: [String: String]
    /// Maps whose key holds a syscall number (read from a raw_syscalls tracepoint's `id` or a
    /// syscalls tracepoint's `nr`): map → the key's field that holds it, "" for the key itself.
    public var syscallKeys: [String: String]
    /// For maps of `syscallKeys` whose key is a syscall number only under a global's value
    /// (`key = count_by_process ? pid : args->id`): map → "NAME" (when NAME is non-zero) or
    /// "!NAME" (when NAME is zero).
    public var syscallKeyConditions: [String: String]
    /// Maps that hold operations in flight, not results, and do not print: a function of the
    /// probe looks an entry up and deletes it (the start time of an operation, kept until it
    /// ends), or the values it stores are bpf_ktime_get_ns() timestamps.
    public var inFlight: [String]
    /// Maps whose key the program sets to a constant in some path (`hkey = -1` when no
    /// per-process flag is set): map → the constant as the key's type reads it ("4294967295"),
    /// or "{}" for a struct key that starts as `{}` and whose fields are set only under a
    /// global's `if` (biolatency's `hkey`): the all-zero key. The entry under it counts
    /// everything: it prints without its key and its labels.
    public var catchAllKeys: [String: String]
    /// For catch-all keys that are one only while a global is zero (runqlen's `hists[cpu]` with
    /// `cpu = 0` unless `targ_per_cpu`): map or global → "!NAME" (or "NAME").
    public var catchAllKeyConditions: [String: String]
    /// For log2 `slots` structs whose slot is the log2 of a bpf_ktime_get_ns() difference: struct →
    /// its unit as libbpf-tools' userspace labels it ("nsecs", "usecs", "msecs"), or
    /// "NAME?UNIT:UNIT" when a global chooses (runqlat's `targ_ms`: "targ_ms?msecs:usecs").
    public var slotUnits: [String: String]
    /// For linear `slots` structs indexed by a quantity divided by a constant (cpufreq's
    /// `freq / HIST_STEP_SIZE`): struct → that step ("200"); slot k then stands for k × step.
    public var slotSteps: [String: String]
    /// Maps whose key has a field computed from a disk's major number (biolatency's `hkey.dev`,
    /// the kernel's dev_t: major << 20 | minor): map → that field; it prints as the device's name.
    public var deviceKeys: [String: String]

    public init(events: [String: String] = [:], histograms: [String: String] = [:], stackTraces: [String] = [],
                tables: [String: String] = [:], programs: [String: String] = [:], slots: [String: String] = [:],
                syscallKeys: [String: String] = [:], syscallKeyConditions: [String: String] = [:], inFlight: [String] = [],
                catchAllKeys: [String: String] = [:], catchAllKeyConditions: [String: String] = [:], slotUnits: [String: String] = [:], slotSteps: [String: String] = [:],
                deviceKeys: [String: String] = [:]) {
        self.events = events
        self.histograms = histograms
        self.stackTraces = stackTraces
        self.tables = tables
        self.programs = programs
        self.slots = slots
        self.syscallKeys = syscallKeys
        self.syscallKeyConditions = syscallKeyConditions
        self.inFlight = inFlight
        self.catchAllKeys = catchAllKeys
        self.catchAllKeyConditions = catchAllKeyConditions
        self.slotUnits = slotUnits
        self.slotSteps = slotSteps
        self.deviceKeys = deviceKeys
    }

    private enum CodingKeys: String, CodingKey {
        case events, histograms, stackTraces, tables, programs, slots, syscallKeys, syscallKeyConditions, inFlight, catchAllKeys, slotUnits,
             slotSteps, deviceKeys, catchAllKeyConditions
    }

    /// Every table of strings, by its JSON name.
    private static var stringTables: [(key: CodingKeys, path: WritableKeyPath<ProbeMetadata, [String: String]>)] {
        [(.events, \.events), (.histograms, \.histograms), (.tables, \.tables), (.programs, \.programs),
         (.slots, \.slots), (.syscallKeys, \.syscallKeys), (.syscallKeyConditions, \.syscallKeyConditions),
         (.catchAllKeys, \.catchAllKeys), (.catchAllKeyConditions, \.catchAllKeyConditions),
         (.slotUnits, \.slotUnits), (.slotSteps, \.slotSteps), (.deviceKeys, \.deviceKeys)]
    }

    /// Written even when empty; the compiler's facts about maps (added later) only when present,
    /// so that objects without them keep the bytes they always had.
    private static let alwaysWritten: Set<CodingKeys> = [.events, .histograms, .tables, .programs, .stackTraces]

    /// Sets one entry of a string table by its JSON name, or adds `key` to a list (how the
    /// compiler worker hands its findings over); unknown tables are ignored.
    public mutating func set(table: String, key: String, value: String) {
        if let path = Self.stringTables.first(where: { $0.key.rawValue == table })?.path {
            self[keyPath: path][key] = value
        } else if table == CodingKeys.inFlight.rawValue, !inFlight.contains(key) {
            inFlight.append(key)
        }
    }

    /// A field a writer left out is empty.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        for (key, path) in Self.stringTables {
            self[keyPath: path] = try container.decodeIfPresent([String: String].self, forKey: key) ?? [:]
        }
        stackTraces = try container.decodeIfPresent([String].self, forKey: .stackTraces) ?? []
        inFlight = try container.decodeIfPresent([String].self, forKey: .inFlight) ?? []
    }

    /// Compact JSON with sorted keys, as JSONEncoder's `.sortedKeys` writes it: the same object
    /// always gives the same bytes (the compile cache compares objects).
    public func json() -> String {
        let string = JSON.string
        func map(_ values: [String: String]) -> String {
            "{" + values.sorted { $0.key < $1.key }.map { string($0.key) + ":" + string($0.value) }.joined(separator: ",") + "}"
        }
        var fields: [(CodingKeys, String)] = Self.stringTables
            .filter { Self.alwaysWritten.contains($0.key) || !self[keyPath: $0.path].isEmpty }
            .map { ($0.key, map(self[keyPath: $0.path])) }
        for (key, list) in [(CodingKeys.stackTraces, stackTraces), (.inFlight, inFlight)]
        where Self.alwaysWritten.contains(key) || !list.isEmpty {
            fields.append((key, "[" + list.map(string).joined(separator: ",") + "]"))
        }
        return "{" + fields.sorted { $0.0.rawValue < $1.0.rawValue }.map { string($0.0.rawValue) + ":" + $0.1 }.joined(separator: ",") + "}"
    }
}
