import CLibBPF
import Glibc

/// One map's printed form in each output format.
struct MapOutput {
    var text: [String]
    var json: [String]
    /// Only maps with stacks have folded lines.
    var folded: [String] = []

    func lines(_ format: OutputFormat) -> [String] {
        switch format {
        case .text: return text
        case .json: return json
        case .folded: return folded
        }
    }
}

/// Reads user maps (at exit, or every interval) and decodes them through the object's BTF.
///
/// Printed: hash, LRU hash, array, LPM trie and their per-CPU variants (integers summed over
/// CPUs, other per-CPU values listed per CPU), plus .data/.bss globals that are not zero.
/// Skipped: .rodata/.kconfig, ring and perf buffers, program arrays, stack traces (their ids
/// are resolved where other maps refer to them), maps of maps and other non-data maps.
///
/// Histograms: a map the BCC front end recorded as a BPF_HISTOGRAM (its metadata), or a map
/// whose value is a struct with one array member named `slots` (libbpf-tools' `struct hist`),
/// prints as a histogram (see `Histogram`). Maps with stack ids: see `StackResolver`.
struct MapReader {
    let formatter: BTFFormatter
    var metadata: ObjectMetadata = ObjectMetadata()
    var stacks: StackResolver?

    init(formatter: BTFFormatter, metadata: ObjectMetadata = ObjectMetadata(), stacks: StackResolver? = nil) {
        self.formatter = formatter
        self.metadata = metadata
        self.stacks = stacks
    }

    /// Whether `report` prints the map (and `clear` empties it).
    static func isData(_ map: OpaquePointer) -> Bool {
        guard !bpf_map__is_internal(map) else { return false }
        // usdt.bpf.h's maps are libbpf's bookkeeping for USDT arguments, not the probe's data.
        guard !String(cString: bpf_map__name(map)).hasPrefix("__bpf_usdt_") else { return false }
        switch bpf_map__type(map) {
        case BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LPM_TRIE,
             BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY:
            return true
        default:
            return false
        }
    }

    /// nil for maps that are not printed.
    func report(_ map: OpaquePointer) -> MapOutput? {
        let name = String(cString: bpf_map__name(map))
        if bpf_map__is_internal(map) {
            return globals(map, name: name).map { MapOutput(text: $0.text, json: [$0.json]) }
        }
        guard MapReader.isData(map) else { return nil }
        let type = bpf_map__type(map)
        let perCPU = type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY
        let isArray = type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY
        guard let entries = read(map, perCPU: perCPU, skipZero: isArray) else { return nil }

        if let kind = metadata.histograms[name].flatMap(Histogram.Kind.init(rawValue:)),
           let histograms = MapReader.bucketHistograms(name: name, kind: kind, entries: entries) {
            return MapReader.output(histograms, name: name)
        }
        let single = isArray && bpf_map__max_entries(map) == 1
        if let histograms = MapReader.slotHistograms(name: name, entries: entries, keyed: !single) {
            return MapOutput(text: histograms.flatMap(\.text), json: histograms.map(\.json))
        }
        if let stacks, !stacks.traceMaps.isEmpty, let first = entries.first,
           !MapReader.stackFields(first.key).isEmpty || !MapReader.stackFields(first.value).isEmpty {
            let report = StackReport(name: name, entries: MapReport.ordered(entries, byValue: true), resolver: stacks)
            return MapOutput(text: report.text, json: [report.json], folded: report.folded)
        }
        let table = MapReport(name: name, entries: MapReport.ordered(entries, byValue: !isArray))
        return MapOutput(text: table.text, json: [table.json])
    }

    private static func output(_ histograms: [Histogram], name: String) -> MapOutput {
        MapOutput(text: histograms.flatMap(\.text), json: histograms.map(\.json))
    }

    /// Every entry, decoded; nil when the map cannot be read.
    private func read(_ map: OpaquePointer, perCPU: Bool, skipZero: Bool) -> [(key: Value, value: Value)]? {
        let fd = bpf_map__fd(map)
        guard fd >= 0 else { return nil }
        let keyType = bpf_map__btf_key_type_id(map), valueType = bpf_map__btf_value_type_id(map)
        let keySize = Int(bpf_map__key_size(map)), valueSize = Int(bpf_map__value_size(map))
        let cpus = perCPU ? Int(max(libbpf_num_possible_cpus(), 1)) : 1
        let stride = perCPU ? (valueSize + 7) & ~7 : valueSize

        var entries: [(key: Value, value: Value)] = []
        var key = [UInt8](repeating: 0, count: max(keySize, 1))
        var next = key
        var value = [UInt8](repeating: 0, count: max(stride * cpus, 1))
        var first = true
        while true {
            let status = first
                ? bpf_map_get_next_key(fd, nil, &next)
                : bpf_map_get_next_key(fd, key, &next)
            guard status == 0 else { break }
            first = false
            key = next
            guard bpf_map_lookup_elem(fd, key, &value) == 0 else { continue }
            let decodedValue: Value
            if perCPU {
                decodedValue = combine((0..<cpus).map { cpu in
                    formatter.decode(typeID: valueType, bytes: Array(value[(cpu * stride)..<(cpu * stride + valueSize)]))
                })
            } else {
                decodedValue = formatter.decode(typeID: valueType, bytes: Array(value[0..<valueSize]))
            }
            if skipZero, decodedValue.isZero { continue }
            entries.append((formatter.decode(typeID: keyType, bytes: Array(key[0..<keySize])), decodedValue))
        }
        return entries
    }

    /// BCC histograms: integer keys are bucket numbers; a struct key's `slot` field is the
    /// bucket and its other fields name one histogram each (as BCC's section headers do).
    static func bucketHistograms(name: String, kind: Histogram.Kind, entries: [(key: Value, value: Value)]) -> [Histogram]? {
        var groups: [(key: Value?, buckets: [UInt64])] = []
        let limit = kind == .log2 ? 65 : 1 << 16
        for entry in entries {
            guard let count = entry.value.integer, count >= 0 else { return nil }
            var section: Value?
            let bucket: Int128
            if let integer = entry.key.integer {
                bucket = integer
            } else if case let .structure(fields) = entry.key, let slot = fields.first(where: { $0.name == "slot" })?.value.integer {
                bucket = slot
                section = .structure(fields.filter { $0.name != "slot" })
            } else {
                return nil
            }
            guard bucket >= 0, bucket < limit else { continue }
            let index = groups.firstIndex { $0.key == section } ?? {
                groups.append((section, []))
                return groups.count - 1
            }()
            if groups[index].buckets.count <= Int(bucket) {
                groups[index].buckets += [UInt64](repeating: 0, count: Int(bucket) + 1 - groups[index].buckets.count)
            }
            groups[index].buckets[Int(bucket)] &+= UInt64(clamping: count)
        }
        if groups.isEmpty { return [Histogram(name: name, kind: kind, buckets: [])] }
        return groups.sorted { a, b in a.key.map { x in b.key.map { MapReport.keyOrder(x, $0) } ?? false } ?? true }
            .map { Histogram(name: name, kind: kind, key: $0.key, buckets: $0.buckets) }
    }

    /// libbpf-tools histograms: every value is `{slots=[…]}`, one histogram per key (the key
    /// is left out for a one-entry array).
    static func slotHistograms(name: String, entries: [(key: Value, value: Value)], keyed: Bool) -> [Histogram]? {
        guard !entries.isEmpty else { return nil }
        var result: [Histogram] = []
        for entry in entries.sorted(by: { MapReport.keyOrder($0.key, $1.key) }) {
            guard case let .structure(fields) = entry.value, fields.count == 1, fields[0].name == "slots",
                  case let .array(items) = fields[0].value else { return nil }
            var slots: [UInt64] = []
            for item in items {
                guard let count = item.integer, count >= 0 else { return nil }
                slots.append(UInt64(clamping: count))
            }
            result.append(Histogram(name: name, key: keyed ? entry.key : nil, slots: slots))
        }
        return result
    }

    static func stackFields(_ value: Value) -> [(name: String, id: Int64)] {
        guard case let .structure(fields) = value else { return [] }
        return fields.compactMap { field in
            guard StackResolver.isStackField(field.name), let id = field.value.integer else { return nil }
            return (field.name, Int64(truncatingIfNeeded: id))
        }
    }

    /// Per-CPU integers are summed; anything else stays a per-CPU list.
    private func combine(_ values: [Value]) -> Value {
        var total: Int128 = 0
        for value in values {
            guard let integer = value.integer else { return .array(values) }
            total += integer
        }
        if let small = Int64(exactly: total), values.contains(where: { if case .signed = $0 { return true }; return false }) {
            return .signed(small)
        }
        if let unsigned = UInt64(exactly: total) { return .unsigned(unsigned) }
        return .signed(Int64(clamping: total))
    }

    /// .data and .bss as `variable  value` rows, leaving out zero variables; nil when nothing
    /// is left (or for .rodata and .kconfig, which the program cannot change).
    private func globals(_ map: OpaquePointer, name: String) -> MapReport? {
        guard let dot = name.lastIndex(of: "."), [".data", ".bss"].contains(String(name[dot...])) || name[dot...].hasPrefix(".data.") else {
            return nil
        }
        let fd = bpf_map__fd(map)
        let size = Int(bpf_map__value_size(map))
        guard fd >= 0, size > 0, let btf = formatter.btf else { return nil }
        var key: UInt32 = 0
        var value = [UInt8](repeating: 0, count: size)
        guard bpf_map_lookup_elem(fd, &key, &value) == 0 else { return nil }
        let section = bpf_map__btf_value_type_id(map)
        guard let type = btf__type_by_id(btf, section), btf_is_datasec(type), let variables = btf_var_secinfos(type) else { return nil }
        var entries: [(key: Value, value: Value)] = []
        for index in 0..<Int(btf_vlen(type)) {
            let info = variables[index]
            let start = Int(info.offset), end = start + Int(info.size)
            guard end <= value.count, let variable = btf__type_by_id(btf, info.type), btf_is_var(variable) else { continue }
            let variableName = btf__name_by_offset(btf, variable.pointee.name_off).map { String(cString: $0) } ?? "?"
            // The BCC front end's metadata and record-type anchors are not the program's data.
            if variableName.hasPrefix("__kprobe_run_") { continue }
            let decoded = formatter.decode(typeID: variable.pointee.type, bytes: Array(value[start..<end]))
            if decoded.isZero { continue }
            entries.append((.string(variableName), decoded))
        }
        guard !entries.isEmpty else { return nil }
        return MapReport(name: String(name[dot...]), entries: entries, keyTitle: "variable")
    }

    /// Empties a map for `--clear`: hashes lose their keys, arrays are zeroed.
    static func clear(_ map: OpaquePointer) {
        let fd = bpf_map__fd(map)
        guard fd >= 0, isData(map) else { return }
        let keySize = Int(bpf_map__key_size(map))
        let type = bpf_map__type(map)
        guard type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY else {
            deleteAll(fd: fd, keySize: keySize)
            return
        }
        let perCPU = type == BPF_MAP_TYPE_PERCPU_ARRAY
        let valueSize = Int(bpf_map__value_size(map))
        let cpus = perCPU ? Int(max(libbpf_num_possible_cpus(), 1)) : 1
        let zero = [UInt8](repeating: 0, count: (perCPU ? (valueSize + 7) & ~7 : valueSize) * cpus)
        for index in 0..<bpf_map__max_entries(map) {
            var key = index
            _ = bpf_map_update_elem(fd, &key, zero, UInt64(BPF_ANY))
        }
    }

    /// Deletes keys one by one (restarting from the first key, since deleting the current key
    /// invalidates iteration in some map types).
    static func deleteAll(fd: Int32, keySize: Int) {
        var key = [UInt8](repeating: 0, count: max(keySize, 1))
        var guardCount = 0
        while bpf_map_get_next_key(fd, nil, &key) == 0, guardCount < 1 << 22 {
            if bpf_map_delete_elem(fd, key) != 0 { break }
            guardCount += 1
        }
    }
}
