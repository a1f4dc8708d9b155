import KprobeSupport

/// A decoded BPF value (map key/value or ring/perf buffer record), ready to print as text or JSON.
indirect enum Value: Equatable, Sendable {
    case signed(Int64)
    case unsigned(UInt64)
    case float(Double)
    case bool(Bool)
    /// A C char array, up to its first NUL.
    case string(String)
    case pointer(UInt64)
    /// An enum value with a matching enumerator name.
    case enumerator(String)
    /// Bytes without a usable type (no BTF, 128-bit ints, forward declarations).
    case bytes([UInt8])
    case structure([(name: String, value: Value)])
    case array([Value])

    static func == (lhs: Value, rhs: Value) -> Bool {
        switch (lhs, rhs) {
        case let (.signed(a), .signed(b)): return a == b
        case let (.unsigned(a), .unsigned(b)): return a == b
        case let (.float(a), .float(b)): return a == b
        case let (.bool(a), .bool(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.pointer(a), .pointer(b)): return a == b
        case let (.enumerator(a), .enumerator(b)): return a == b
        case let (.bytes(a), .bytes(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.structure(a), .structure(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.name == $1.name && $0.value == $1.value }
        default: return false
        }
    }

    /// The value as an integer when it is a single integer; used to sort count tables and to sum
    /// per-CPU values.
    var integer: Int128? {
        switch self {
        case let .signed(v): return Int128(v)
        case let .unsigned(v): return Int128(v)
        default: return nil
        }
    }

    /// Whether every byte behind this value was zero; arrays skip such entries in map dumps.
    var isZero: Bool {
        switch self {
        case let .signed(v): return v == 0
        case let .unsigned(v): return v == 0
        case let .float(v): return v == 0
        case let .bool(v): return !v
        case let .string(v): return v.isEmpty
        case let .pointer(v): return v == 0
        case .enumerator: return false
        case let .bytes(v): return v.allSatisfy { $0 == 0 }
        case let .structure(fields): return fields.allSatisfy { $0.value.isZero }
        case let .array(items): return items.allSatisfy { $0.isZero }
        }
    }

    // MARK: text

    /// `field=value field=value` for a top-level struct, the plain value otherwise.
    var line: String {
        if case let .structure(fields) = self {
            return fields.map { "\($0.name)=\($0.value.text)" }.joined(separator: " ")
        }
        return text
    }

    /// Nested form: structs as `{a=1 b=2}`, arrays as `[1,2,3]`, pointers in hex.
    var text: String {
        switch self {
        case let .signed(v): return String(v)
        case let .unsigned(v): return String(v)
        case let .float(v): return String(v)
        case let .bool(v): return v ? "true" : "false"
        case let .string(v): return Value.printable(v)
        case let .pointer(v): return "0x" + String(v, radix: 16)
        case let .enumerator(v): return v
        case let .bytes(v): return Value.hex(v)
        case let .structure(fields): return "{" + fields.map { "\($0.name)=\($0.value.text)" }.joined(separator: " ") + "}"
        case let .array(items): return "[" + items.map(\.text).joined(separator: ",") + "]"
        }
    }

    // MARK: JSON

    var json: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    func writeJSON(into out: inout String) {
        switch self {
        case let .signed(v): out += String(v)
        case let .unsigned(v): out += String(v)
        case let .float(v): out += v.isFinite ? String(v) : "null"
        case let .bool(v): out += v ? "true" : "false"
        case let .string(v): JSON.writeString(v, into: &out)
        case let .pointer(v): JSON.writeString("0x" + String(v, radix: 16), into: &out)
        case let .enumerator(v): JSON.writeString(v, into: &out)
        case let .bytes(v): JSON.writeString(Value.hex(v), into: &out)
        case let .structure(fields):
            out += "{"
            for (index, field) in fields.enumerated() {
                if index > 0 { out += "," }
                JSON.writeString(field.name, into: &out)
                out += ":"
                field.value.writeJSON(into: &out)
            }
            out += "}"
        case let .array(items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.writeJSON(into: &out)
            }
            out += "]"
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "0"), UInt8(ascii: "x")]
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Control characters as `\xNN` so that one record stays one line.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                let digits = String(scalar.value, radix: 16)
                out += "\\x" + (digits.count < 2 ? "0" : "") + digits
            } else if scalar == "\\" {
                out += "\\\\"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
