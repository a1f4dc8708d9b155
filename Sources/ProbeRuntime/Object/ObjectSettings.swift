import CLibBPF
import KprobeSupport

/// What userspace decides about an object before it is loaded, the way a libbpf-tools tool's own
/// userspace half does: map sizes (`--map-size`), `const volatile` parameters (`--set`) and which
/// programs load (`--only`/`--skip`). Shared by `run`, `compile --verify` and `info`.
public struct LoadOptions: Sendable {
    /// `--map-size NAME=N`: max_entries (bytes for a ring buffer).
    public var mapSizes: [String: UInt32] = [:]
    /// `--set NAME=VALUE`, in command-line order.
    public var parameters: [Setting] = []
    /// `--only PROG`: load just these programs.
    public var only: [String] = []
    /// `--skip PROG`: do not load these programs.
    public var skip: [String] = []

    public struct Setting: Sendable, Equatable {
        public var name: String
        public var value: String

        /// `NAME=VALUE`; `flag` names the option in the error.
        public init(parsing text: String, flag: String) throws(RuntimeError) {
            guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
                throw RuntimeError(.usage, "\(flag) \(text): expected NAME=VALUE")
            }
            name = String(text[..<equals])
            value = String(text[text.index(after: equals)...])
        }
    }

    public init() {}

    /// Adds one `--map-size NAME=N`.
    public mutating func addMapSize(_ text: String) throws(RuntimeError) {
        let setting = try Setting(parsing: text, flag: "--map-size")
        guard let size = UInt32(setting.value), size > 0 else {
            throw RuntimeError(.usage, "--map-size \(text): the size must be a whole number from 1 to \(UInt32.max)")
        }
        mapSizes[setting.name] = size
    }
}

/// Sizes libbpf-tools leave to userspace (`max_entries` or `value_size` 0 in the BPF source).
enum MapDefaults {
    /// Hash and array maps: libbpf-tools' usual MAX_ENTRIES.
    static let entries: UInt32 = 10240
    /// Ring buffers: 256 KiB, as libbpf-tools' compat.bpf.h.
    static let ringBufferBytes: UInt32 = 256 * 1024
    /// Stack trace maps: as many stacks as BCC's BPF_STACK_TRACE default.
    static let stackEntries: UInt32 = 16384
    /// Stack trace maps: PERF_MAX_STACK_DEPTH (127) frames of 8 bytes.
    static let stackValueSize: UInt32 = 127 * 8

    /// Maps the kernel creates only with max_entries 0, since their entries live with the socket,
    /// inode, task or cgroup: sk/inode/task/cgroup local storage (cgroup storage is 32 since
    /// Linux 6.2, newer than the installed UAPI header) and the older cgroup storage maps.
    static func keepsNoEntries(_ type: bpf_map_type) -> Bool {
        [BPF_MAP_TYPE_SK_STORAGE, BPF_MAP_TYPE_INODE_STORAGE, BPF_MAP_TYPE_TASK_STORAGE,
         BPF_MAP_TYPE_CGROUP_STORAGE, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE].contains(type) || type.rawValue == 32
    }
}

extension ProbeObject {
    /// Applies `--map-size` and gives maps that userspace normally sizes a size that loads;
    /// returns the maps that got a default size.
    @discardableResult
    func sizeMaps(_ sizes: [String: UInt32], log: (String) -> Void) throws(RuntimeError) -> Set<String> {
        var defaulted: Set<String> = []
        let names = maps.filter { !$0.isInternal }.map(\.name)
        for name in sizes.keys.sorted() where !names.contains(name) {
            throw RuntimeError(.usage, "--map-size \(name)=…: the object has no map named '\(name)'; it has: \(names.joined(separator: ", "))")
        }
        for map in maps where !map.isInternal {
            let type = map.type
            if type == BPF_MAP_TYPE_STACK_TRACE, map.valueSize == 0 {
                try set(map, "value size", MapDefaults.stackValueSize, bpf_map__set_value_size(map.pointer, MapDefaults.stackValueSize))
                log("map '\(map.name)': value size \(MapDefaults.stackValueSize) (127 frames)")
            }
            var size = sizes[map.name]
            if size == nil, map.maxEntries == 0, type != BPF_MAP_TYPE_PERF_EVENT_ARRAY, !MapDefaults.keepsNoEntries(type) {
                size = type == BPF_MAP_TYPE_RINGBUF ? MapDefaults.ringBufferBytes
                    : type == BPF_MAP_TYPE_STACK_TRACE ? MapDefaults.stackEntries : MapDefaults.entries
                log("map '\(map.name)': \(size!) entries (the source leaves the size to userspace; --map-size \(map.name)=N sets it)")
                defaulted.insert(map.name)
            }
            guard let size else { continue }
            if type == BPF_MAP_TYPE_RINGBUF, size & (size - 1) != 0 || size % 4096 != 0 {
                throw RuntimeError(.usage, "--map-size \(map.name)=\(size): a ring buffer's size is in bytes, a power of 2 and a multiple of the page size (4096), e.g. \(MapDefaults.ringBufferBytes)")
            }
            try set(map, "size", size, bpf_map__set_max_entries(map.pointer, size))
        }
        return defaulted
    }

    private func set(_ map: BPFMap, _ what: String, _ value: UInt32, _ result: Int32) throws(RuntimeError) {
        guard result == 0 else {
            throw RuntimeError(.internal, "cannot set the \(what) of map '\(map.name)' to \(value): \(Errno(-result))")
        }
    }

    /// A global the loader may set before load: `const volatile` ones (.rodata) are what
    /// libbpf-tools use; .data and .bss variables are settable as well.
    struct Parameter {
        var name: String
        var map: BPFMap
        var typeID: UInt32
        var offset: Int
        var size: Int
    }

    /// Every settable global, .rodata first.
    var parameters: [Parameter] {
        guard let btf else { return [] }
        let sections = maps.filter { map in
            map.isInternal && [".rodata", ".data", ".bss"].contains { map.name.hasSuffix($0) || map.name.contains($0 + ".") }
        }
        let rodataFirst = sections.filter { $0.name.contains(".rodata") } + sections.filter { !$0.name.contains(".rodata") }
        return rodataFirst.flatMap { map in
            btf.variables(ofSection: map.valueTypeID)
                .filter { !$0.name.isEmpty && !$0.name.hasPrefix("__kprobe_run_") }
                .map { Parameter(name: $0.name, map: map, typeID: $0.typeID, offset: $0.offset, size: $0.size) }
        }
    }

    /// Writes every `--set` into the object's initial data, checked against the variable's type.
    func setParameters(_ settings: [LoadOptions.Setting], log: (String) -> Void) throws(RuntimeError) {
        let parameters = parameters
        for setting in settings {
            guard let parameter = parameters.first(where: { $0.name == setting.name }) else {
                let names = parameters.map(\.name)
                throw RuntimeError(.usage, "--set \(setting.name)=…: the object has no global variable named '\(setting.name)'; "
                                   + (names.isEmpty ? "it has none" : "it has: " + names.joined(separator: ", ")))
            }
            let type = ParameterType(btf: btf, typeID: parameter.typeID)
            let bytes: [UInt8]
            do {
                bytes = try type.encode(setting.value, size: parameter.size)
            } catch {
                throw RuntimeError(.usage, "--set \(setting.name)=\(setting.value): \(setting.name) is \(type.spelling): \(error.message)")
            }
            try write(bytes, to: parameter)
            log("set \(setting.name) = \(setting.value)")
        }
    }

    /// false when the variable's section has no initial data to change.
    @discardableResult
    func write(_ bytes: [UInt8], to parameter: Parameter) throws(RuntimeError) -> Bool {
        var size = 0
        guard let data = bpf_map__initial_value(parameter.map.pointer, &size), parameter.offset + bytes.count <= size else {
            return false
        }
        var contents = Array(UnsafeRawBufferPointer(start: data, count: size))
        contents.replaceSubrange(parameter.offset..<parameter.offset + bytes.count, with: bytes)
        let result = bpf_map__set_initial_value(parameter.map.pointer, contents, size)
        guard result == 0 else {
            throw RuntimeError(.internal, "cannot set \(parameter.name) in \(parameter.map.name): \(Errno(-result))")
        }
        return true
    }

    /// The value a parameter has in the object, for `info`.
    func initialValue(of parameter: Parameter, formatter: BTFFormatter) -> Value? {
        var size = 0
        guard let data = bpf_map__initial_value(parameter.map.pointer, &size), parameter.offset + parameter.size <= size else {
            return nil
        }
        let bytes = UnsafeRawBufferPointer(start: data + parameter.offset, count: parameter.size)
        return formatter.decode(typeID: parameter.typeID, bytes: bytes)
    }
}

/// What a `--set` value must look like, from the variable's BTF type.
struct ParameterType {
    enum Kind: Equatable {
        case integer(signed: Bool)
        case bool
        /// Enumerators by name and value.
        case enumeration([(String, Int64)])
        /// A char array of this many bytes (the last one stays NUL).
        case text(Int)
        case unsupported

        static func == (lhs: Kind, rhs: Kind) -> Bool {
            switch (lhs, rhs) {
            case let (.integer(a), .integer(b)): return a == b
            case (.bool, .bool), (.unsupported, .unsupported): return true
            case let (.text(a), .text(b)): return a == b
            case let (.enumeration(a), .enumeration(b)): return a.map(\.0) == b.map(\.0) && a.map(\.1) == b.map(\.1)
            default: return false
            }
        }
    }

    struct Mismatch: Error {
        var message: String
    }

    var kind: Kind
    /// The type as C spells it (`int`, `pid_t`, `char[16]`), for messages and `info`.
    var spelling: String

    init(kind: Kind, spelling: String) {
        self.kind = kind
        self.spelling = spelling
    }

    init(btf: BTFHandle?, typeID: UInt32) {
        guard let btf else {
            self.init(kind: .unsupported, spelling: "of unknown type")
            return
        }
        var id = typeID
        var spelling: String?
        while let type = btf.type(id) {
            if btf_is_mod(type) { id = type.pointee.type; continue }
            if btf_is_typedef(type) {
                if spelling == nil { spelling = btf.name(of: type) }
                id = type.pointee.type
                continue
            }
            break
        }
        guard let type = btf.type(id) else {
            self.init(kind: .unsupported, spelling: spelling ?? "of unknown type")
            return
        }
        let name = btf.name(of: type) ?? ""
        if btf_is_int(type) {
            let encoding = Int32(btf_int_encoding(type))
            let kind: Kind = encoding & BTF_INT_BOOL != 0 ? .bool : .integer(signed: encoding & BTF_INT_SIGNED != 0)
            self.init(kind: kind, spelling: spelling ?? name)
        } else if btf_is_any_enum(type) {
            var enumerators: [(String, Int64)] = []
            for index in 0..<Int(btf_vlen(type)) {
                if btf_is_enum64(type), let entry = btf_enum64(type).map({ $0 + index }) {
                    let text = btf__name_by_offset(btf.pointer, entry.pointee.name_off).map { String(cString: $0) } ?? ""
                    enumerators.append((text, Int64(bitPattern: btf_enum64_value(entry))))
                } else if let entry = btf_enum(type).map({ $0 + index }) {
                    let text = btf__name_by_offset(btf.pointer, entry.pointee.name_off).map { String(cString: $0) } ?? ""
                    enumerators.append((text, Int64(entry.pointee.val)))
                }
            }
            self.init(kind: .enumeration(enumerators), spelling: spelling ?? "enum \(name)")
        } else if btf_is_array(type), let info = btf_array(type), ParameterType.isChar(btf, info.pointee.type) {
            self.init(kind: .text(Int(info.pointee.nelems)), spelling: spelling ?? "char[\(info.pointee.nelems)]")
        } else {
            self.init(kind: .unsupported, spelling: spelling ?? (name.isEmpty ? "a \(ParameterType.kindName(type))" : name))
        }
    }

    private static func isChar(_ btf: BTFHandle, _ typeID: UInt32) -> Bool {
        var id = typeID
        while let type = btf.type(id) {
            if btf_is_mod(type) || btf_is_typedef(type) { id = type.pointee.type; continue }
            return btf_is_int(type) && type.pointee.size == 1
        }
        return false
    }

    private static func kindName(_ type: UnsafePointer<btf_type>) -> String {
        if btf_is_composite(type) { return "struct or union" }
        if btf_is_ptr(type) { return "pointer" }
        if btf_is_array(type) { return "array" }
        return "value"
    }

    /// The bytes of `text` as a value of this type, `size` bytes long (host byte order).
    func encode(_ text: String, size: Int) throws(Mismatch) -> [UInt8] {
        switch kind {
        case .bool:
            switch text.lowercased() {
            case "true", "1", "yes", "on": return ParameterType.bytes(1, size: size)
            case "false", "0", "no", "off": return ParameterType.bytes(0, size: size)
            default: throw Mismatch(message: "expected true or false")
            }
        case let .integer(signed):
            return ParameterType.bytes(try ParameterType.integer(text, signed: signed, size: size), size: size)
        case let .enumeration(enumerators):
            if let match = enumerators.first(where: { $0.0 == text }) {
                return ParameterType.bytes(UInt64(bitPattern: match.1), size: size)
            }
            guard let value = try? ParameterType.integer(text, signed: true, size: size) else {
                throw Mismatch(message: "expected one of " + enumerators.map(\.0).joined(separator: ", ") + " or an integer")
            }
            return ParameterType.bytes(value, size: size)
        case let .text(capacity):
            let utf8 = Array(text.utf8)
            guard utf8.count < capacity else {
                throw Mismatch(message: "at most \(capacity - 1) bytes fit (one is the terminating NUL); this is \(utf8.count)")
            }
            return utf8 + [UInt8](repeating: 0, count: size - utf8.count)
        case .unsupported:
            throw Mismatch(message: "only integers, booleans, enums and char arrays can be set from the command line")
        }
    }

    /// Decimal or 0x hex, checked against the variable's size and signedness; the bit pattern.
    private static func integer(_ text: String, signed: Bool, size: Int) throws(Mismatch) -> UInt64 {
        let negative = text.hasPrefix("-")
        let digits = negative ? text.dropFirst() : Substring(text)
        let hex = digits.lowercased().hasPrefix("0x")
        guard let magnitude = hex ? UInt64(digits.dropFirst(2), radix: 16) : UInt64(digits, radix: 10), !digits.isEmpty else {
            throw Mismatch(message: "expected an integer (decimal or 0x hex)")
        }
        let bits = UInt64(size * 8)
        if signed {
            let limit: UInt64 = bits >= 64 ? UInt64(Int64.max) : (1 << (bits - 1)) - 1
            guard negative ? magnitude <= limit + 1 : magnitude <= limit else {
                throw Mismatch(message: "out of range for a signed \(bits)-bit integer")
            }
            return negative ? 0 &- magnitude : magnitude
        }
        guard !negative else { throw Mismatch(message: "it is unsigned: a negative number does not fit") }
        guard bits >= 64 || magnitude < 1 << bits else {
            throw Mismatch(message: "out of range for an unsigned \(bits)-bit integer (at most \(bits >= 64 ? UInt64.max : (1 << bits) - 1))")
        }
        return magnitude
    }

    private static func bytes(_ value: UInt64, size: Int) -> [UInt8] {
        withUnsafeBytes(of: value) { raw in
            #if _endian(little)
            return Array(raw.prefix(size)) + [UInt8](repeating: 0, count: max(0, size - 8))
            #else
            return Array(raw.suffix(min(size, 8)))
            #endif
        }
    }
}
