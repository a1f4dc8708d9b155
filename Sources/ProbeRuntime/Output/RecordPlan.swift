import KprobeSupport
import CLibBPF

/// How a format frames a record printed through a `RecordPlan`: `head`, then with -T `timeLead`,
/// the seconds since attach and `timeTail`, then `label`, the record's fields in `style`, `tail`.
struct EventLayout {
    enum Style { case text, json }
    let style: Style
    var head: [UInt8] = []
    var timeLead: [UInt8] = []
    var timeTail: [UInt8] = []
    var label: [UInt8] = []
    var tail: [UInt8] = []
}

/// A record type of flat fields (integers, bools, pointers, `char` arrays) compiled once per
/// buffer map, format and -T setting into a list of operations over one table of literal bytes,
/// so that each record prints straight into the output buffer: no `Value`, no String, no array,
/// no reference counting and no bounds check per record (issue 13: events at the rate the kernel
/// produces them). The lines are the ones `OutputWriter.event(…value:…)` makes; a record the plan
/// cannot print byte-for-byte alike (non-ASCII text) makes `write` return nil, and the caller
/// takes the `Value` path. Types with nested structs, arrays other than `char`, enums, floats or
/// bit-fields get no plan.
final class RecordPlan {
    private enum Operation {
        /// `count` bytes of the literal table from `start`.
        case literal(start: Int, count: Int)
        /// -T seconds with microseconds, as `Reporter.seconds` writes them.
        case time
        case signed(offset: Int, size: Int), unsigned(offset: Int, size: Int), bool(offset: Int, size: Int)
        case pointer(offset: Int, size: Int)
        case chars(offset: Int, count: Int, json: Bool)
    }

    private let operations: UnsafeMutableBufferPointer<Operation>
    private let literals: UnsafeMutableBufferPointer<UInt8>
    /// The record type's size: shorter records are not the plan's (see `BTFFormatter.decodeRecord`).
    let size: Int
    /// The longest line `write` can produce (without its newline).
    let maxLength: Int

    init?(formatter: BTFFormatter, typeID: UInt32, layout: EventLayout, timestamps: Bool) {
        guard let btf = formatter.btf, let size = formatter.size(of: typeID) else { return nil }
        let resolved = btf__resolve_type(btf.pointer, typeID)
        guard resolved > 0, let type = btf.type(UInt32(resolved)), btf_is_struct(type),
              let members = btf_members(type), btf_vlen(type) > 0 else { return nil }
        var builder = Builder()
        builder.literal(layout.head)
        if timestamps {
            builder.literal(layout.timeLead)
            builder.add(.time, length: 27)
            builder.literal(layout.timeTail)
        }
        builder.literal(layout.label)
        let json = layout.style == .json
        if json { builder.literal([UInt8(ascii: "{")]) }
        for index in 0..<Int(btf_vlen(type)) {
            let member = members + index
            guard btf_member_bitfield_size(type, UInt32(index)) == 0,
                  let name = btf__name_by_offset(btf.pointer, member.pointee.name_off).map({ String(cString: $0) }), !name.isEmpty,
                  let kind = RecordPlan.kind(btf, member.pointee.type) else { return nil }
            let offset = Int(btf_member_bit_offset(type, UInt32(index))) / 8
            if json {
                builder.literal(Array(((index == 0 ? "" : ",") + JSON.string(name) + ":").utf8))
            } else {
                builder.literal(Array(((index == 0 ? "" : " ") + name + "=").utf8))
            }
            switch kind {
            case let .signed(size): builder.add(.signed(offset: offset, size: size), length: 20)
            case let .unsigned(size): builder.add(.unsigned(offset: offset, size: size), length: 20)
            case let .bool(size): builder.add(.bool(offset: offset, size: size), length: 5)
            case let .pointer(size):
                if json { builder.literal([UInt8(ascii: "\"")]) }
                builder.add(.pointer(offset: offset, size: size), length: 18)
                if json { builder.literal([UInt8(ascii: "\"")]) }
            case let .chars(count):
                // At most 4 (text `\xNN`) or 6 (JSON `\u00NN`) bytes per byte of text.
                if json {
                    builder.literal([UInt8(ascii: "\"")])
                    builder.add(.chars(offset: offset, count: count, json: true), length: 6 * count)
                    builder.literal([UInt8(ascii: "\"")])
                } else {
                    builder.add(.chars(offset: offset, count: count, json: false), length: 4 * count)
                }
            }
        }
        if json { builder.literal([UInt8(ascii: "}")]) }
        builder.literal(layout.tail)
        operations = .allocate(capacity: builder.operations.count)
        _ = operations.initialize(from: builder.operations)
        literals = .allocate(capacity: max(1, builder.literals.count))
        _ = literals.initialize(from: builder.literals)
        self.size = size
        maxLength = builder.length
    }

    deinit {
        operations.deallocate()
        literals.deallocate()
    }

    /// Collects operations (adjacent literals merged) and the longest line.
    private struct Builder {
        var operations: [Operation] = []
        var literals: [UInt8] = []
        var length = 0

        mutating func literal(_ bytes: [UInt8]) {
            guard !bytes.isEmpty else { return }
            if case let .literal(start, count)? = operations.last {
                operations[operations.count - 1] = .literal(start: start, count: count + bytes.count)
            } else {
                operations.append(.literal(start: literals.count, count: bytes.count))
            }
            literals += bytes
            length += bytes.count
        }

        mutating func add(_ operation: Operation, length: Int) {
            operations.append(operation)
            self.length += length
        }
    }

    private enum Kind {
        case signed(Int), unsigned(Int), bool(Int), pointer(Int), chars(Int)
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

    /// Writes the line for `record` (at least `size` bytes) at `out`, which has room for
    /// `maxLength` bytes; returns the end, or nil for a record the `Value` path would print
    /// differently (what was written is then garbage). `time` is used with -T only.
    func write(_ record: UnsafeRawBufferPointer, time: Double, to out: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8>? {
        var out = out
        let base = record.baseAddress!
        for operation in UnsafeBufferPointer(operations) {
            switch operation {
            case let .literal(start, count):
                out.update(from: literals.baseAddress! + start, count: count)
                out += count
            case .time:
                let micros = UInt64((max(0, time) * 1_000_000).rounded())
                out = RecordPlan.writeDecimal(micros / 1_000_000, out)
                out.pointee = UInt8(ascii: ".")
                var fraction = micros % 1_000_000
                for index in stride(from: 6, to: 0, by: -1) {
                    out[index] = UInt8(ascii: "0") + UInt8(fraction % 10)
                    fraction /= 10
                }
                out += 7
            case let .signed(offset, size):
                let shift = UInt64(64 - size * 8)
                let value = Int64(bitPattern: RecordPlan.load(base + offset, size) << shift) >> Int64(shift)
                if value < 0 {
                    out.pointee = UInt8(ascii: "-")
                    out += 1
                }
                out = RecordPlan.writeDecimal(value.magnitude, out)
            case let .unsigned(offset, size):
                out = RecordPlan.writeDecimal(RecordPlan.load(base + offset, size), out)
            case let .bool(offset, size):
                out = RecordPlan.copy(RecordPlan.load(base + offset, size) != 0 ? "true" : "false", to: out)
            case let .pointer(offset, size):
                out = RecordPlan.copy("0x", to: out)
                out = RecordPlan.writeHexDigits(RecordPlan.load(base + offset, size), out)
            case let .chars(offset, count, json):
                guard let end = RecordPlan.writeChars(base + offset, count, json: json, out) else { return nil }
                out = end
            }
        }
        return out
    }

    /// In the machine's byte order, as `BTFFormatter.loadUnsigned`.
    private static func load(_ at: UnsafeRawPointer, _ size: Int) -> UInt64 {
        switch size {
        case 1: return UInt64(at.load(as: UInt8.self))
        case 2: return UInt64(at.loadUnaligned(as: UInt16.self))
        case 4: return UInt64(at.loadUnaligned(as: UInt32.self))
        default: return at.loadUnaligned(as: UInt64.self)
        }
    }

    private static func copy(_ text: StaticString, to out: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        out.update(from: text.utf8Start, count: text.utf8CodeUnitCount)
        return out + text.utf8CodeUnitCount
    }

    /// A `char` array up to its first NUL as `Value.line` (`\xNN` for control bytes) or, `json`,
    /// `Value.writeJSON` escapes it; nil at a byte of non-ASCII text.
    private static func writeChars(_ text: UnsafeRawPointer, _ count: Int, json: Bool, _ out: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8>? {
        var out = out
        for index in 0..<count {
            let byte = text.load(fromByteOffset: index, as: UInt8.self)
            switch byte {
            case 0: return out
            case 0x80...: return nil
            case UInt8(ascii: "\\"): out = copy("\\\\", to: out)
            case UInt8(ascii: "\"") where json: out = copy("\\\"", to: out)
            case 0..<0x20, 0x7f:
                guard json else {
                    out = copy(byte < 0x10 ? "\\x0" : "\\x", to: out)
                    out = writeHexDigits(UInt64(byte), out)
                    continue
                }
                switch byte {
                case 0x0a: out = copy("\\n", to: out)
                case 0x0d: out = copy("\\r", to: out)
                case 0x09: out = copy("\\t", to: out)
                case 0x08: out = copy("\\b", to: out)
                case 0x0c: out = copy("\\f", to: out)
                default:
                    out = copy(byte < 0x10 ? "\\u000" : "\\u00", to: out)
                    out = writeHexDigits(UInt64(byte), out)
                }
            default:
                out.pointee = byte
                out += 1
            }
        }
        return out
    }

    private static func writeDecimal(_ value: UInt64, _ out: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        var digits = 1, limit: UInt64 = 10
        while digits < 20, value >= limit {
            digits += 1
            limit &*= 10
        }
        // Two digits per division, from the right.
        let pairs = digitPairs.utf8Start
        var rest = value, index = digits
        while index >= 2 {
            let pair = Int(rest % 100) * 2
            rest /= 100
            index -= 2
            out[index] = pairs[pair]
            out[index + 1] = pairs[pair + 1]
        }
        if index == 1 { out[0] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest) }
        return out + digits
    }

    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    private static func writeHexDigits(_ value: UInt64, _ out: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        var digits = 1
        while digits < 16, value >> UInt64(4 * digits) != 0 { digits += 1 }
        for index in 0..<digits {
            let nibble = UInt8(truncatingIfNeeded: value >> UInt64(4 * (digits - 1 - index))) & 0xf
            out[index] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
        }
        return out + digits
    }
}
