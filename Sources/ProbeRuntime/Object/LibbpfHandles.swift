import CLibBPF

/// Borrowed views of what a libbpf `bpf_object` owns: they say which kind of libbpf pointer
/// they hold and read its properties, and live no longer than their `ProbeObject` (which frees
/// everything at once with `bpf_object__close`).

/// One map of an object (`struct bpf_map *`).
struct BPFMap {
    let pointer: OpaquePointer

    var name: String { String(cString: bpf_map__name(pointer)) }
    var type: bpf_map_type { bpf_map__type(pointer) }
    /// The map's file descriptor once loaded, negative before.
    var fd: Int32 { bpf_map__fd(pointer) }
    /// .data, .bss, .rodata, .kconfig: libbpf's maps for global variables.
    var isInternal: Bool { bpf_map__is_internal(pointer) }
    var keySize: Int { Int(bpf_map__key_size(pointer)) }
    var valueSize: Int { Int(bpf_map__value_size(pointer)) }
    var maxEntries: UInt32 { bpf_map__max_entries(pointer) }
    var keyTypeID: UInt32 { bpf_map__btf_key_type_id(pointer) }
    var valueTypeID: UInt32 { bpf_map__btf_value_type_id(pointer) }

    var isPerCPU: Bool {
        [BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY].contains(type)
    }

    var isArray: Bool { type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY }
}

/// One program of an object (`struct bpf_program *`).
struct BPFProgram {
    let pointer: OpaquePointer

    var name: String { String(cString: bpf_program__name(pointer)) }
    var section: String { String(cString: bpf_program__section_name(pointer)) }
    var type: bpf_prog_type { bpf_program__type(pointer) }
    var autoload: Bool {
        get { bpf_program__autoload(pointer) }
        nonmutating set { _ = bpf_program__set_autoload(pointer, newValue) }
    }

    /// BPF_JMP|BPF_CALL with src_reg 0 calls a helper; 6 is bpf_trace_printk, 177 bpf_trace_vprintk.
    var callsPrintk: Bool {
        guard let instructions = bpf_program__insns(pointer) else { return false }
        for index in 0..<Int(bpf_program__insn_cnt(pointer)) {
            let instruction = instructions[index]
            if instruction.code == 0x85, instruction.src_reg == 0, instruction.imm == 6 || instruction.imm == 177 {
                return true
            }
        }
        return false
    }
}

/// An object's type information (`struct btf *`).
struct BTFHandle {
    let pointer: OpaquePointer

    func type(_ id: UInt32) -> UnsafePointer<btf_type>? { btf__type_by_id(pointer, id) }

    func name(of type: UnsafePointer<btf_type>) -> String? {
        btf__name_by_offset(pointer, type.pointee.name_off).map { String(cString: $0) }
    }

    /// The variables of a DATASEC (a .data/.bss/.rodata map's value type): name, type, place.
    func variables(ofSection id: UInt32) -> [(name: String, typeID: UInt32, offset: Int, size: Int)] {
        guard let section = type(id), btf_is_datasec(section), let infos = btf_var_secinfos(section) else { return [] }
        return (0..<Int(btf_vlen(section))).compactMap { index in
            let info = infos[index]
            guard let variable = type(info.type), btf_is_var(variable) else { return nil }
            return (name(of: variable) ?? "", variable.pointee.type, Int(info.offset), Int(info.size))
        }
    }
}

/// libbpf's `*_opts` structs: libbpf refuses options whose bytes after the last field it knows
/// are not zero ("non-zero extra bytes"), and Swift's initializer leaves tail padding undefined,
/// so the storage is zeroed in place (a copy would not keep the padding) before `sz` is set.
enum LibbpfOptions {
    static func prepare<Options>(_ options: inout Options, size: WritableKeyPath<Options, Int>) {
        withUnsafeMutableBytes(of: &options) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        options[keyPath: size] = MemoryLayout<Options>.size
    }
}
