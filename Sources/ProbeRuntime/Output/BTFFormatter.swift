import CLibBPF

/// Decodes raw bytes through an object's BTF into `Value`s.
///
/// Without a type (id 0) the bytes print as an unsigned integer when they have an integer's size,
/// as hex otherwise. Character arrays become strings, bit-fields and enums are decoded, pointers
/// are shown as addresses (there is nothing to follow in user space).
struct BTFFormatter {
    let btf: BTFHandle?

    init(btf: BTFHandle?) { self.btf = btf }

    func decode(typeID: UInt32, bytes: UnsafeRawBufferPointer) -> Value {
        guard let btf, typeID != 0, typeID < btf__type_cnt(btf.pointer) else { return BTFFormatter.untyped(bytes) }
        return value(typeID, bytes, depth: 0)
    }

    func decode(typeID: UInt32, bytes: [UInt8]) -> Value {
        bytes.withUnsafeBytes { decode(typeID: typeID, bytes: $0) }
    }

    /// Size in bytes of a type, or nil when BTF cannot size it.
    func size(of typeID: UInt32) -> Int? {
        guard let btf, typeID != 0 else { return nil }
        let size = btf__resolve_size(btf.pointer, typeID)
        return size < 0 ? nil : Int(size)
    }

    /// Whether the type (after typedefs and qualifiers) is a plain integer or enum.
    func isInteger(_ typeID: UInt32) -> Bool {
        guard let btf, typeID != 0 else { return false }
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf__type_by_id(btf.pointer, UInt32(resolved)) else { return false }
        return btf_is_int(type) && btf_int_bits(type) <= 64 || btf_is_any_enum(type)
    }

    /// The id of the struct (or union) named `name`, if the BTF has one.
    func structID(named name: String) -> UInt32? {
        guard let btf else { return nil }
        for kind in [BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_TYPEDEF] {
            let id = btf__find_by_name_kind(btf.pointer, name, UInt32(kind))
            if id > 0 {
                let resolved = btf__resolve_type(btf.pointer, UInt32(id))
                if resolved > 0, let type = btf__type_by_id(btf.pointer, UInt32(resolved)), btf_is_composite(type) {
                    return UInt32(resolved)
                }
            }
        }
        return nil
    }

    /// The id of a type written as C spells it: "struct X", "union X", "enum X", or a typedef or
    /// base type name ("data_t", "u64"); qualifiers are ignored.
    func typeID(spelling: String) -> UInt32? {
        guard let btf else { return nil }
        var words = spelling.split(separator: " ").map(String.init).filter { $0 != "const" && $0 != "volatile" }
        guard !words.isEmpty, !spelling.contains("*"), !spelling.contains("(") else { return nil }
        let kinds: [Int]
        switch words[0] {
        case "struct": kinds = [BTF_KIND_STRUCT]; words.removeFirst()
        case "union": kinds = [BTF_KIND_UNION]; words.removeFirst()
        case "enum": kinds = [BTF_KIND_ENUM, BTF_KIND_ENUM64]; words.removeFirst()
        default: kinds = [BTF_KIND_TYPEDEF, BTF_KIND_INT, BTF_KIND_FLOAT]
        }
        let name = words.joined(separator: " ")
        for kind in kinds {
            let id = btf__find_by_name_kind(btf.pointer, name, UInt32(kind))
            if id > 0 { return UInt32(id) }
        }
        return nil
    }

    /// A ring/perf-buffer record of a struct type: the record may be shorter than the type when
    /// its last member is a char array filled only as far as needed (execsnoop's `args`, sent
    /// with `offsetof(args) + args_size` bytes). That tail then shows what was sent, its
    /// NUL-separated strings joined by spaces; any other short record is hex.
    func decodeRecord(typeID: UInt32, size: Int, bytes: UnsafeRawBufferPointer) -> Value {
        if bytes.count >= size { return decode(typeID: typeID, bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<size])) }
        guard let tail = characterTail(typeID), tail.offset <= bytes.count else { return .bytes(Array(bytes)) }
        var padded = Array(bytes)
        padded += [UInt8](repeating: 0, count: size - bytes.count)
        guard case var .structure(fields) = decode(typeID: typeID, bytes: padded), fields.last?.name == tail.name else {
            return .bytes(Array(bytes))
        }
        let text = bytes[tail.offset...].split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        fields[fields.count - 1].value = .string(text)
        return .structure(fields)
    }

    /// The last member of a struct when it is a char array: its name and byte offset.
    private func characterTail(_ typeID: UInt32) -> (name: String, offset: Int)? {
        guard let btf else { return nil }
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf__type_by_id(btf.pointer, UInt32(resolved)), btf_is_struct(type),
              let members = btf_members(type), btf_vlen(type) > 0 else { return nil }
        let index = Int(btf_vlen(type)) - 1
        let member = members + index
        guard let array = btf__type_by_id(btf.pointer, UInt32(max(btf__resolve_type(btf.pointer, member.pointee.type), 0))),
              btf_is_array(array), let info = btf_array(array), characterKind(info.pointee.type) != nil else { return nil }
        let name = btf__name_by_offset(btf.pointer, member.pointee.name_off).map { String(cString: $0) } ?? ""
        return (name, Int(btf_member_bit_offset(type, UInt32(index))) / 8)
    }

    static func untyped(_ bytes: UnsafeRawBufferPointer) -> Value {
        switch bytes.count {
        case 1, 2, 4, 8: return .unsigned(loadUnsigned(bytes, offset: 0, size: bytes.count))
        default: return .bytes(Array(bytes))
        }
    }

    static func untyped(_ bytes: [UInt8]) -> Value {
        bytes.withUnsafeBytes { untyped($0) }
    }

    // MARK: decoding

    private static let maxDepth = 32

    private func value(_ typeID: UInt32, _ bytes: UnsafeRawBufferPointer, depth: Int) -> Value {
        guard let btf, depth < BTFFormatter.maxDepth, let type = btf__type_by_id(btf.pointer, typeID) else {
            return .bytes(Array(bytes))
        }
        switch Int(btf_kind(type)) {
        case BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST,
             BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG:
            return value(type.pointee.type, bytes, depth: depth + 1)
        case BTF_KIND_INT:
            return integer(type, bytes, bitOffset: Int(btf_int_offset(type)), bits: Int(btf_int_bits(type)))
        case BTF_KIND_PTR:
            return .pointer(BTFFormatter.loadUnsigned(bytes, offset: 0, size: min(bytes.count, 8)))
        case BTF_KIND_ENUM, BTF_KIND_ENUM64:
            return enumeration(type, bytes)
        case BTF_KIND_FLOAT:
            if type.pointee.size == 4, bytes.count >= 4 { return .float(Double(bytes.loadUnaligned(as: Float.self))) }
            if type.pointee.size == 8, bytes.count >= 8 { return .float(bytes.loadUnaligned(as: Double.self)) }
            return .bytes(Array(bytes.prefix(Int(type.pointee.size))))
        case BTF_KIND_ARRAY:
            return array(type, bytes, depth: depth)
        case BTF_KIND_STRUCT, BTF_KIND_UNION:
            return composite(type, bytes, depth: depth)
        default:
            return .bytes(Array(bytes))
        }
    }

    private func integer(_ type: UnsafePointer<btf_type>, _ bytes: UnsafeRawBufferPointer, bitOffset: Int, bits: Int) -> Value {
        let signed = Int32(btf_int_encoding(type)) & BTF_INT_SIGNED != 0
        let isBool = Int32(btf_int_encoding(type)) & BTF_INT_BOOL != 0
        let size = Int(type.pointee.size)
        guard size <= 8, bits <= 64 else { return .bytes(Array(bytes.prefix(size))) }
        var raw = BTFFormatter.loadUnsigned(bytes, offset: 0, size: min(size, bytes.count))
        if bitOffset > 0 || bits < size * 8 {
            raw = bitfield(raw, offset: bitOffset, bits: bits)
        }
        return BTFFormatter.scalar(raw, bits: bits, signed: signed, bool: isBool)
    }

    private static func scalar(_ raw: UInt64, bits: Int, signed: Bool, bool: Bool) -> Value {
        if bool { return .bool(raw != 0) }
        guard signed, bits > 0 else { return .unsigned(raw) }
        let shift = UInt64(64 - bits)
        return .signed(Int64(bitPattern: raw << shift) >> Int64(shift))
    }

    private func bitfield(_ raw: UInt64, offset: Int, bits: Int) -> UInt64 {
        guard bits < 64 else { return raw >> UInt64(offset) }
        return (raw >> UInt64(offset)) & ((1 << UInt64(bits)) - 1)
    }

    private func enumeration(_ type: UnsafePointer<btf_type>, _ bytes: UnsafeRawBufferPointer) -> Value {
        guard let btf else { return .bytes(Array(bytes)) }
        let size = Int(type.pointee.size)
        let raw = BTFFormatter.loadUnsigned(bytes, offset: 0, size: min(size, bytes.count, 8))
        let signed = btf_kflag(type)
        let count = Int(btf_vlen(type))
        for index in 0..<count {
            let name: UnsafePointer<CChar>?
            let matches: Bool
            if btf_is_enum64(type) {
                let entry = btf_enum64(type)! + index
                name = btf__name_by_offset(btf.pointer, entry.pointee.name_off)
                matches = btf_enum64_value(entry) == raw
            } else {
                let entry = btf_enum(type)! + index
                name = btf__name_by_offset(btf.pointer, entry.pointee.name_off)
                let value = size < 8 ? raw & ((1 << UInt64(size * 8)) - 1) : raw
                matches = UInt64(UInt32(bitPattern: entry.pointee.val)) == value
            }
            if matches, let name, name.pointee != 0 { return .enumerator(String(cString: name)) }
        }
        return BTFFormatter.scalar(raw, bits: size * 8, signed: signed, bool: false)
    }

    private func array(_ type: UnsafePointer<btf_type>, _ bytes: UnsafeRawBufferPointer, depth: Int) -> Value {
        guard let btf, let info = btf_array(type) else { return .bytes(Array(bytes)) }
        let elementID = info.pointee.type
        let count = Int(info.pointee.nelems)
        let elementSize = Int(max(btf__resolve_size(btf.pointer, elementID), 0))
        if let character = characterKind(elementID) {
            let limit = min(count, bytes.count)
            let prefix = UnsafeRawBufferPointer(rebasing: bytes[0..<limit])
            let end = prefix.firstIndex(of: 0) ?? limit
            let text = prefix[0..<end]
            if character == "char" || text.allSatisfy({ $0 >= 0x20 && $0 != 0x7f }) {
                return .string(String(decoding: text, as: UTF8.self))
            }
        }
        guard elementSize > 0 else { return .array([]) }
        var items: [Value] = []
        items.reserveCapacity(count)
        for index in 0..<count {
            let start = index * elementSize
            guard start + elementSize <= bytes.count else { break }
            items.append(value(elementID, UnsafeRawBufferPointer(rebasing: bytes[start..<(start + elementSize)]), depth: depth + 1))
        }
        return .array(items)
    }

    /// The name of a `char`, `signed char` or `unsigned char` element written as such (qualifiers
    /// allowed); nil for a typedef such as `__u8`, which means bytes, not text. `char` arrays are
    /// always strings, the others only when their text is printable.
    private func characterKind(_ typeID: UInt32) -> String? {
        guard let btf else { return nil }
        var id = typeID
        while let type = btf__type_by_id(btf.pointer, id) {
            if btf_is_mod(type) || btf_is_type_tag(type) {
                id = type.pointee.type
                continue
            }
            guard btf_is_int(type), type.pointee.size == 1, let name = btf__name_by_offset(btf.pointer, type.pointee.name_off) else { return nil }
            let text = String(cString: name)
            return ["char", "signed char", "unsigned char"].contains(text) ? text : nil
        }
        return nil
    }

    private func composite(_ type: UnsafePointer<btf_type>, _ bytes: UnsafeRawBufferPointer, depth: Int) -> Value {
        guard let btf, let members = btf_members(type) else { return .bytes(Array(bytes)) }
        var fields: [(name: String, value: Value)] = []
        let count = Int(btf_vlen(type))
        for index in 0..<count {
            let member = members + index
            let name = btf__name_by_offset(btf.pointer, member.pointee.name_off).map { String(cString: $0) } ?? ""
            let bitOffset = Int(btf_member_bit_offset(type, UInt32(index)))
            let bitfieldSize = Int(btf_member_bitfield_size(type, UInt32(index)))
            let memberValue: Value
            if bitfieldSize > 0 {
                guard (bitOffset + bitfieldSize + 7) / 8 <= bytes.count else { continue }
                memberValue = bitfieldMember(member.pointee.type, bytes, bitOffset: bitOffset, bits: bitfieldSize)
            } else {
                let start = bitOffset / 8
                let size = Int(max(btf__resolve_size(btf.pointer, member.pointee.type), 0))
                guard start + size <= bytes.count else { continue }
                memberValue = value(member.pointee.type, UnsafeRawBufferPointer(rebasing: bytes[start..<(start + size)]), depth: depth + 1)
            }
            if name.isEmpty, case let .structure(inner) = memberValue {
                // Anonymous struct/union members read as fields of the enclosing struct in C.
                fields.append(contentsOf: inner)
            } else {
                fields.append((name, memberValue))
            }
        }
        return .structure(fields)
    }

    private func bitfieldMember(_ typeID: UInt32, _ bytes: UnsafeRawBufferPointer, bitOffset: Int, bits: Int) -> Value {
        guard let btf else { return .bytes([]) }
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf__type_by_id(btf.pointer, UInt32(resolved)) else { return .bytes([]) }
        let start = bitOffset / 8
        let span = min(8, bytes.count - start)
        guard span > 0 else { return .bytes([]) }
        let raw = bitfield(BTFFormatter.loadUnsigned(bytes, offset: start, size: span), offset: bitOffset % 8, bits: bits)
        if btf_is_int(type) {
            let signed = Int32(btf_int_encoding(type)) & BTF_INT_SIGNED != 0
            return BTFFormatter.scalar(raw, bits: bits, signed: signed, bool: Int32(btf_int_encoding(type)) & BTF_INT_BOOL != 0)
        }
        if btf_is_any_enum(type) {
            var buffer = raw
            return withUnsafeBytes(of: &buffer) { enumeration(type, $0) }
        }
        return .unsigned(raw)
    }

    /// Little- or big-endian as the host: BPF maps use the kernel's (the host's) byte order.
    static func loadUnsigned(_ bytes: UnsafeRawBufferPointer, offset: Int, size: Int) -> UInt64 {
        var result: UInt64 = 0
        withUnsafeMutableBytes(of: &result) { target in
            let count = max(0, min(size, 8, bytes.count - offset))
            #if _endian(little)
            for index in 0..<count { target[index] = bytes[offset + index] }
            #else
            for index in 0..<count { target[8 - count + index] = bytes[offset + index] }
            #endif
        }
        return result
    }
}
