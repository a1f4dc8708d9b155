import CLibBPF
import Glibc

/// Reads user maps (at exit, or every interval) and decodes them through the object's BTF.
///
/// Printed: hash, LRU hash, array, LPM trie and their per-CPU variants (integers summed over
/// CPUs, other per-CPU values listed per CPU), plus .data/.bss globals that are not zero.
/// Skipped: .rodata/.kconfig, ring and perf buffers, program arrays, stack traces (their ids
/// are resolved where other maps refer to them), maps of maps and other non-data maps, and maps
/// the compiler found to hold operations in flight (metadata `inFlight`: runqlat's `start`)
/// unless their entries carry stack ids.
///
/// Histograms: a map the BCC front end recorded as a BPF_HISTOGRAM (its metadata), or a map
/// whose value is a struct with an array member named `slots` (libbpf-tools' `struct hist`),
/// prints as a histogram (see `Histogram`), one per key, the value's other fields (runqlat's
/// `comm`) as labels. Maps with stack ids: see `StackResolver`.
struct MapReader {
    let formatter: BTFFormatter
    var metadata: ObjectMetadata = ObjectMetadata()
    var stacks: StackResolver?
    /// The record types of the object's ring and perf buffers: a one-entry per-CPU array of
    /// such a type is scratch space for building records (libbpf-tools' `heap`), not data.
    var recordTypes: Set<UInt32> = []

    init(formatter: BTFFormatter, metadata: ObjectMetadata = ObjectMetadata(), stacks: StackResolver? = nil) {
        self.formatter = formatter
        self.metadata = metadata
        self.stacks = stacks
    }

    /// Whether `report` prints the map (and `clear` empties it).
    static func isData(_ map: BPFMap) -> Bool {
        guard !map.isInternal else { return false }
        // usdt.bpf.h's maps are libbpf's bookkeeping for USDT arguments, not the probe's data.
        guard !map.name.hasPrefix("__bpf_usdt_") else { return false }
        switch map.type {
        case BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LPM_TRIE,
             BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY:
            return true
        default:
            return false
        }
    }

    /// nil for maps that are not printed.
    func report(_ map: BPFMap) -> [MapContent] {
        if map.isInternal { return globals(map, name: map.name) }
        return table(map).map { [$0] } ?? []
    }

    private func table(_ map: BPFMap) -> MapContent? {
        let name = map.name
        guard MapReader.isData(map) else { return nil }
        // Scratch space for building records: of a record type, or of bytes without a type
        // (compat.bpf.h's `heap`, sized with value_size only).
        if map.type == BPF_MAP_TYPE_PERCPU_ARRAY, map.maxEntries == 1,
           recordTypes.contains(map.valueTypeID) || map.valueTypeID == 0 { return nil }
        let isArray = map.isArray
        guard var entries = read(map, skipZero: isArray) else { return nil }
        // Operations in flight are not results, unless they carry stacks (memleak's outstanding
        // allocations, freed as they go, are its report).
        if metadata.inFlight.contains(name),
           !entries.contains(where: { !MapReader.stackFields($0.key).isEmpty || !MapReader.stackFields($0.value).isEmpty }) {
            return nil
        }
        if let field = metadata.syscallKeys[name] {
            entries = entries.map { (MapReader.namingSyscall($0.key, field: field), $0.value) }
        }
        if let field = metadata.deviceKeys[name] {
            entries = entries.map { (MapReader.namingDevice($0.key, field: field), $0.value) }
        }

        if let kind = metadata.histograms[name].flatMap(Histogram.Kind.init(rawValue:)),
           let histograms = MapReader.bucketHistograms(name: name, kind: kind, entries: entries) {
            return .histograms(histograms)
        }
        let single = isArray && map.maxEntries == 1
        if var histograms = MapReader.slotHistograms(name: name, style: slotStyle(map.valueTypeID), entries: entries, keyed: !single),
           !MapReader.onlyLabels(histograms) {
            dropCatchAllKey(name, &histograms)
            return .histograms(histograms)
        }
        // Values with slots that are all empty and other fields that are not (hardirqs counting
        // without -d): a table of those fields.
        entries = entries.map { entry in
            guard case let .structure(fields) = entry.value, fields.contains(where: { $0.name == "slots" && $0.value.isZero }),
                  fields.count > 1 else { return entry }
            return (entry.key, .structure(fields.filter { $0.name != "slots" }))
        }
        if let stacks, !stacks.traceMaps.isEmpty, let first = entries.first,
           !MapReader.stackFields(first.key).isEmpty || !MapReader.stackFields(first.value).isEmpty {
            return .stacks(StackReport(name: name, entries: MapReport.ordered(entries, byValue: true), resolver: stacks))
        }
        return .table(MapReport(name: name, entries: MapReport.ordered(entries, byValue: !isArray),
                                keyTitle: metadata.syscallKeys[name] == "" ? "syscall" : "key"))
    }

    /// Every entry, decoded; nil when the map cannot be read.
    private func read(_ map: BPFMap, skipZero: Bool) -> [(key: Value, value: Value)]? {
        let fd = map.fd
        guard fd >= 0 else { return nil }
        let perCPU = map.isPerCPU
        let keyType = map.keyTypeID, valueType = map.valueTypeID
        let keySize = map.keySize, valueSize = map.valueSize
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

    /// libbpf-tools histograms: every value is a struct with an integer array `slots`, one
    /// histogram per key (the key is left out for a one-entry array); the value's other fields
    /// that are not zero label it (runqlat -P's `comm`, hardirqs' counts).
    static func slotHistograms(name: String, style: Histogram.SlotStyle = Histogram.SlotStyle(),
                               entries: [(key: Value, value: Value)], keyed: Bool) -> [Histogram]? {
        guard !entries.isEmpty else { return nil }
        var result: [Histogram] = []
        for entry in entries.sorted(by: { MapReport.keyOrder($0.key, $1.key) }) {
            guard case let .structure(fields) = entry.value,
                  let slotField = fields.first(where: { $0.name == "slots" }),
                  case let .array(items) = slotField.value else { return nil }
            var slots: [UInt64] = []
            for item in items {
                guard let count = item.integer, count >= 0 else { return nil }
                slots.append(UInt64(clamping: count))
            }
            let labels = fields.filter { $0.name != "slots" && !$0.value.isZero }
            result.append(Histogram(name: name, style: style, key: keyed ? entry.key : nil,
                                    labels: labels.isEmpty ? nil : .structure(labels), slots: slots))
        }
        return result
    }

    /// A key holding a syscall number (in `field`, or the key itself for ""), with the number
    /// replaced by the syscall's name where this machine's table knows it.
    static func namingSyscall(_ key: Value, field: String) -> Value {
        if field.isEmpty {
            return key.integer.flatMap(SyscallNames.name).map(Value.string) ?? key
        }
        guard case let .structure(fields) = key else { return key }
        return .structure(fields.map { $0.name == field ? ($0.name, namingSyscall($0.value, field: "")) : $0 })
    }

    /// A struct key whose `field` holds a kernel dev_t (major << 20 | minor), with the number
    /// replaced by the block device's name (/sys/dev/block/MAJOR:MINOR), as libbpf-tools'
    /// userspace names disks. 0 (no disk) and unknown devices keep their number.
    static func namingDevice(_ key: Value, field: String) -> Value {
        guard case let .structure(fields) = key else { return key }
        return .structure(fields.map { item in
            guard item.name == field, let number = item.value.integer, number > 0,
                  let name = blockDeviceName(major: number >> 20, minor: number & 0xfffff) else { return item }
            return (item.name, .string(name))
        })
    }

    private static func blockDeviceName(major: Int128, minor: Int128) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/sys/dev/block/\(major):\(minor)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return target.split(separator: "/").last.map(String.init)
    }

    /// How the program indexes the `slots` of a value of this type, or of the elements of an
    /// array of them (runqlen's `hists[]`): what the compiler recorded for the struct (log2,
    /// without a unit, when it recorded nothing).
    func slotStyle(_ typeID: UInt32) -> Histogram.SlotStyle {
        guard let btf = formatter.btf, !metadata.slots.isEmpty else { return Histogram.SlotStyle() }
        var resolved = btf__resolve_type(btf.pointer, typeID)
        if resolved > 0, let type = btf__type_by_id(btf.pointer, UInt32(resolved)), btf_is_array(type), let info = btf_array(type) {
            resolved = btf__resolve_type(btf.pointer, info.pointee.type)
        }
        guard resolved > 0, let spelling = metadata.slots.keys.first(where: { formatter.typeID(spelling: $0) == UInt32(resolved) }) else {
            return Histogram.SlotStyle()
        }
        return slotStyle(key: spelling)
    }

    /// The style recorded under a struct's spelling or a global array's name.
    func slotStyle(key: String) -> Histogram.SlotStyle {
        Histogram.SlotStyle(kind: metadata.slots[key].flatMap(Histogram.Kind.init(rawValue:)) ?? .log2,
                  unit: metadata.slotUnits[key], step: metadata.slotSteps[key].flatMap { UInt64($0) } ?? 1)
    }

    /// The histogram under a catch-all key (metadata `catchAllKeys`: a constant integer key, or
    /// "{}" for the all-zero struct key) stands for everything: no key, no labels.
    private func dropCatchAllKey(_ name: String, _ histograms: inout [Histogram]) {
        guard let catchAll = metadata.catchAllKeys[name] else { return }
        for index in histograms.indices where catchAll == "{}" ? histograms[index].key?.isZero == true
            : histograms[index].key?.integer == Int128(catchAll) {
            histograms[index].key = nil
            histograms[index].labels = nil
        }
    }

    /// Histograms whose buckets are all empty, each labelled by other fields: the program
    /// filled those fields instead (a tool's counting mode), so they print as a table.
    static func onlyLabels(_ histograms: [Histogram]) -> Bool {
        histograms.allSatisfy { $0.rows.isEmpty && $0.labels != nil }
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

    /// .data and .bss as `variable  value` rows, leaving out zero variables (nothing for .rodata
    /// and .kconfig, which the program cannot change); a `struct hist` global, or an array of
    /// them (runqlen's per-CPU `hists[]`, one histogram per non-zero index), prints as histograms.
    private func globals(_ map: BPFMap, name: String) -> [MapContent] {
        guard let dot = name.lastIndex(of: "."), [".data", ".bss"].contains(String(name[dot...])) || name[dot...].hasPrefix(".data.") else {
            return []
        }
        let fd = map.fd
        let size = map.valueSize
        guard fd >= 0, size > 0, let btf = formatter.btf else { return [] }
        var key: UInt32 = 0
        var value = [UInt8](repeating: 0, count: size)
        guard bpf_map_lookup_elem(fd, &key, &value) == 0 else { return [] }
        var entries: [(key: Value, value: Value)] = []
        var histograms: [Histogram] = []
        for variable in btf.variables(ofSection: map.valueTypeID) {
            let end = variable.offset + variable.size
            guard end <= value.count else { continue }
            // The BCC front end's metadata and record-type anchors are not the program's data.
            if variable.name.hasPrefix("__kprobe_run_") { continue }
            let decoded = formatter.decode(typeID: variable.typeID, bytes: Array(value[variable.offset..<end]))
            if decoded.isZero { continue }
            if let histogram = arrayHistogram(name: variable.name, decoded) {
                histograms.append(histogram)
            } else if case let .array(items) = decoded,
               var perIndex = MapReader.slotHistograms(name: variable.name, style: slotStyle(variable.typeID), entries: items.enumerated().filter { !$0.element.isZero }
                   .map { (Value.unsigned(UInt64($0.offset)), $0.element) }, keyed: true) {
                dropCatchAllKey(variable.name, &perIndex)
                histograms += perIndex
            } else if let single = MapReader.slotHistograms(name: variable.name, style: slotStyle(variable.typeID), entries: [(.unsigned(0), decoded)], keyed: false) {
                histograms += single
            } else {
                entries.append((.string(variable.name.isEmpty ? "?" : variable.name), decoded))
            }
        }
        var contents: [MapContent] = entries.isEmpty ? [] : [.table(MapReport(name: String(name[dot...]), entries: entries, keyTitle: "variable"))]
        if !histograms.isEmpty { contents.append(.histograms(histograms)) }
        return contents
    }

    /// A global integer array the compiler found indexed by a log2 (funclatency's `__u32 hist[]`).
    private func arrayHistogram(name: String, _ value: Value) -> Histogram? {
        guard metadata.slots[name] != nil, case let .array(items) = value else { return nil }
        let counts = items.compactMap { $0.integer.map { UInt64(clamping: $0) } }
        guard counts.count == items.count else { return nil }
        return Histogram(name: name, style: slotStyle(key: name), key: nil, slots: counts)
    }

    /// Empties a printed map for `--clear`; maps of operations in flight keep them (an
    /// operation that spans two intervals is still measured).
    func clear(_ map: BPFMap) {
        guard !metadata.inFlight.contains(map.name) else { return }
        MapReader.clear(map)
    }

    /// Empties a map: hashes lose their keys, arrays are zeroed.
    static func clear(_ map: BPFMap) {
        let fd = map.fd
        guard fd >= 0, isData(map) else { return }
        guard map.isArray else {
            deleteAll(fd: fd, keySize: map.keySize)
            return
        }
        let perCPU = map.isPerCPU
        let valueSize = map.valueSize
        let cpus = perCPU ? Int(max(libbpf_num_possible_cpus(), 1)) : 1
        let zero = [UInt8](repeating: 0, count: (perCPU ? (valueSize + 7) & ~7 : valueSize) * cpus)
        for index in 0..<map.maxEntries {
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
