import CLibBPF
import Glibc

/// Reads user maps at exit and decodes them through the object's BTF.
///
/// Printed: hash, LRU hash, array, LPM trie and their per-CPU variants (integers summed over
/// CPUs, other per-CPU values listed per CPU), plus .data/.bss globals that are not zero.
/// Skipped: .rodata/.kconfig, ring and perf buffers, program arrays, stack traces, maps of maps
/// and other maps whose contents are not data.
struct MapReader {
    let formatter: BTFFormatter

    /// nil for maps that are not printed.
    func report(_ map: OpaquePointer) -> MapReport? {
        let name = String(cString: bpf_map__name(map))
        let type = bpf_map__type(map)
        if bpf_map__is_internal(map) {
            return globals(map, name: name)
        }
        let perCPU: Bool
        switch type {
        case BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LPM_TRIE:
            perCPU = false
        case BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY:
            perCPU = true
        default:
            return nil
        }
        let fd = bpf_map__fd(map)
        guard fd >= 0 else { return nil }
        let keyType = bpf_map__btf_key_type_id(map), valueType = bpf_map__btf_value_type_id(map)
        let keySize = Int(bpf_map__key_size(map)), valueSize = Int(bpf_map__value_size(map))
        let cpus = perCPU ? Int(max(libbpf_num_possible_cpus(), 1)) : 1
        let stride = perCPU ? (valueSize + 7) & ~7 : valueSize
        let isArray = type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY

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
            if isArray, decodedValue.isZero { continue }
            entries.append((formatter.decode(typeID: keyType, bytes: Array(key[0..<keySize])), decodedValue))
        }
        return MapReport(name: name, entries: MapReport.ordered(entries, byValue: !isArray))
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
            let decoded = formatter.decode(typeID: variable.pointee.type, bytes: Array(value[start..<end]))
            if decoded.isZero { continue }
            let variableName = btf__name_by_offset(btf, variable.pointee.name_off).map { String(cString: $0) } ?? "?"
            entries.append((.string(variableName), decoded))
        }
        guard !entries.isEmpty else { return nil }
        return MapReport(name: String(name[dot...]), entries: entries)
    }
}
