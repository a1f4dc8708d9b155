import KprobeSupport
import CLibBPF

/// A record type of flat fields (integers, bools, pointers, `char` arrays), compiled once per
/// buffer map so that each record prints straight into the output bytes: no `Value`, no String
/// per record (issue 13: events at the rate the kernel produces them). The lines are the ones
/// `Value.line` and `Value.writeJSON` make; a record the plan cannot print byte-for-byte alike
/// (non-ASCII text) makes `write` return false, and the caller takes the `Value` path.
/// Types with nested structs, arrays other than `char`, enums, floats or bit-fields get no plan.
struct RecordPlan {
    enum Kind {
        case signed(Int), unsigned(Int), bool(Int), pointer(Int), chars(Int)
    }

    struct Field {
        /// `name=` for text, `"name":` for JSON, with the separator before it (none for the first).
        let textName: [UInt8]
        let jsonName: [UInt8]
        let offset: Int
        let kind: Kind
    }

    let fields: [Field]
    /// The record type's size: shorter records are not the plan's (see `BTFFormatter.decodeRecord`).
    let size: Int

    init?(formatter: BTFFormatter, typeID: UInt32) {
        guard let btf = formatter.btf, let size = formatter.size(of: typeID) else { return nil }
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf.type(UInt32(resolved)), btf_is_struct(type),
              let members = btf_members(type), btf_vlen(type) > 0 else { return nil }
        var fields: [Field] = []
        for index in 0..<Int(btf_vlen(type)) {
            let member = members + index
            guard btf_member_bitfield_size(type, UInt32(index)) == 0,
                  let name = btf__name_by_offset(btf.pointer, member.pointee.name_off).map({ String(cString: $0) }), !name.isEmpty,
                  let kind = RecordPlan.kind(btf, member.pointee.type) else { return nil }
            let separator: [UInt8] = index == 0 ? [] : [UInt8(ascii: " ")]
            let jsonSeparator: [UInt8] = index == 0 ? [] : [UInt8(ascii: ",")]
            fields.append(Field(textName: separator + Array(name.utf8) + [UInt8(ascii: "=")],
                                jsonName: jsonSeparator + Array(JSON.string(name).utf8) + [UInt8(ascii: ":")],
                                offset: Int(btf_member_bit_offset(type, UInt32(index))) / 8, kind: kind))
        }
        self.fields = fields
        self.size = size
    }

    private static func kind(_ btf: BTFHandle, _ typeID: UInt32) -> Kind? {
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf.type(UInt32(resolved)) else { return nil }
        if btf_is_int(type) {
            let size = Int(type.pointee.size), encoding = Int32(btf_int_encoding(type))
            guard [1, 2, 4, 8].contains(size), btf_int_offset(type) == 0, Int(btf_int_bits(type)) == size * 8 else { return nil }
            if encoding & BTF_INT_BOOL != 0 { return .bool(size) }
            return encoding & BTF_INT_SIGNED != 0 ? .signed(size) : .unsigned(size)
        }
        if btf_is_ptr(type) { return .pointer(8) }
        // Only plain `char`: BTFFormatter prints other character arrays as text only when printable.
        if btf_is_array(type), let info = btf_array(type), var current = btf.type(info.pointee.type) {
            while btf_is_mod(current), let next = btf.type(current.pointee.type) { current = next }
            guard btf_is_int(current), current.pointee.size == 1, btf.name(of: current) == "char" else { return nil }
            return .chars(Int(info.pointee.nelems))
        }
        return nil
    }

    // MARK: writing

    /// `name=value name=value` as `Value.line` writes it; false (and `out` unchanged in meaning:
    /// the caller truncates) for text it would write differently.
    func writeText(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        for field in fields {
            out.append(contentsOf: field.textName)
            switch field.kind {
            case .signed, .unsigned, .bool: RecordPlan.writeNumber(field, bytes, &out)
            case let .pointer(size): RecordPlan.writeHex(RecordPlan.load(bytes, field.offset, size), &out)
            case let .chars(count):
                for byte in RecordPlan.text(bytes, field.offset, count) {
                    if byte >= 0x80 { return false }
                    if byte < 0x20 || byte == 0x7f {
                        out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x")])
                        if byte < 0x10 { out.append(UInt8(ascii: "0")) }
                        RecordPlan.writeHexDigits(UInt64(byte), &out)
                    } else if byte == UInt8(ascii: "\\") {
                        out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                    } else {
                        out.append(byte)
                    }
                }
            }
        }
        return true
    }

    /// `{"name":value,…}` as `Value.writeJSON` writes it; false for text it would write differently.
    func writeJSON(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        out.append(UInt8(ascii: "{"))
        for field in fields {
            out.append(contentsOf: field.jsonName)
            switch field.kind {
            case .signed, .unsigned, .bool: RecordPlan.writeNumber(field, bytes, &out)
            case let .pointer(size):
                out.append(UInt8(ascii: "\""))
                RecordPlan.writeHex(RecordPlan.load(bytes, field.offset, size), &out)
                out.append(UInt8(ascii: "\""))
            case let .chars(count):
                out.append(UInt8(ascii: "\""))
                for byte in RecordPlan.text(bytes, field.offset, count) {
                    if byte >= 0x80 { return false }
                    switch byte {
                    case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                    case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                    case 0x0a: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                    case 0x0d: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                    case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                    case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
                    case 0x0c: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
                    case 0..<0x20, 0x7f:
                        out.append(contentsOf: Array("\\u00".utf8))
                        if byte < 0x10 { out.append(UInt8(ascii: "0")) }
                        RecordPlan.writeHexDigits(UInt64(byte), &out)
                    default: out.append(byte)
                    }
                }
                out.append(UInt8(ascii: "\""))
            }
        }
        out.append(UInt8(ascii: "}"))
        return true
    }

    private static let trueBytes = Array("true".utf8), falseBytes = Array("false".utf8)

    /// Integers and bools, which text and JSON write alike.
    private static func writeNumber(_ field: Field, _ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        switch field.kind {
        case let .signed(size): writeSigned(load(bytes, field.offset, size), size, &out)
        case let .unsigned(size): writeDecimal(load(bytes, field.offset, size), &out)
        case let .bool(size): out.append(contentsOf: load(bytes, field.offset, size) != 0 ? trueBytes : falseBytes)
        case .pointer, .chars: break
        }
    }

    private static func load(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ size: Int) -> UInt64 {
        BTFFormatter.loadUnsigned(bytes, offset: offset, size: size)
    }

    /// The bytes of a `char` array up to its first NUL.
    private static func text(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int) -> UnsafeRawBufferPointer.SubSequence {
        let end = min(offset + count, bytes.count)
        let slice = bytes[offset..<end]
        return slice[..<(slice.firstIndex(of: 0) ?? end)]
    }

    private static func writeSigned(_ raw: UInt64, _ size: Int, _ out: inout [UInt8]) {
        let shift = UInt64(64 - size * 8)
        let value = Int64(bitPattern: raw << shift) >> Int64(shift)
        if value < 0 { out.append(UInt8(ascii: "-")) }
        writeDecimal(value.magnitude, &out)
    }

    private static func writeDecimal(_ value: UInt64, _ out: inout [UInt8]) {
        // At most 20 digits, built right to left in a stack buffer.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            var value = value, index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            } while value > 0
            out.append(contentsOf: buffer[index...])
        }
    }

    private static func writeHex(_ value: UInt64, _ out: inout [UInt8]) {
        out.append(contentsOf: [UInt8(ascii: "0"), UInt8(ascii: "x")])
        writeHexDigits(value, &out)
    }

    private static func writeHexDigits(_ value: UInt64, _ out: inout [UInt8]) {
        var shift = 60
        while shift > 0, (value >> UInt64(shift)) & 0xf == 0 { shift -= 4 }
        while shift >= 0 {
            out.append(hexDigits[Int((value >> UInt64(shift)) & 0xf)])
            shift -= 4
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
