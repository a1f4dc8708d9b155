import CLibELF
import FoundationEssentials
import Glibc
import KprobeSupport

/// The `.kprobe_run.meta` section as the runtime reads it; the schema and its writers are
/// KprobeSupport's ProbeMetadata (the BCC front end and the compiler worker write it).
typealias ObjectMetadata = ProbeMetadata

extension ProbeMetadata {
    /// nil when the text is not a JSON object of the schema; unknown keys are ignored.
    init?(json text: String) {
        guard let decoded = try? JSONDecoder().decode(ProbeMetadata.self, from: Data(text.utf8)) else { return nil }
        self = decoded
    }

    /// The metadata of a BPF object image, nil when it has no (readable) section.
    static func read(from image: UnsafeRawBufferPointer) -> ObjectMetadata? {
        guard let bytes = section(named: sectionName, in: image) else { return nil }
        let text = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        return ObjectMetadata(json: text)
    }

    /// The contents of one section of an ELF image (read-only use: libelf converts foreign-endian
    /// files in place only when asked to write).
    static func section(named name: String, in image: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let elf = ELFImage(memory: UnsafeMutableRawBufferPointer(mutating: image)) else { return nil }
        return elf.section(named: name)?.contents.map { Array($0) }
    }
}

extension ProbeObject {
    /// The metadata as this run's output reads it, with the facts that depend on a global's
    /// value (as `--set` left it) decided: a map whose key is a syscall number only under a flag
    /// (syscount's `count_by_process ? pid : args->id`), and a catch-all key that is one only
    /// while a flag is unset (runqlen's `cpu = 0` unless `targ_per_cpu`), keep that fact only
    /// when the flag says so; a histogram unit chosen by a flag (runqlat's `targ_ms`) becomes
    /// that unit.
    var outputMetadata: ObjectMetadata {
        guard !metadata.syscallKeyConditions.isEmpty || !metadata.catchAllKeyConditions.isEmpty
                || metadata.slotUnits.values.contains(where: { $0.contains("?") }) else {
            return metadata
        }
        let formatter = BTFFormatter(btf: btf)
        let parameters = parameters
        /// Whether global NAME is non-zero ("NAME") or zero ("!NAME"; also when there is none).
        func holds(_ condition: String) -> Bool {
            let negated = condition.hasPrefix("!")
            let name = negated ? String(condition.dropFirst()) : condition
            let value = parameters.first { $0.name == name }.flatMap { initialValue(of: $0, formatter: formatter) }
            return (value?.isZero ?? true) == negated
        }
        var result = metadata
        for (map, condition) in metadata.syscallKeyConditions where !holds(condition) {
            result.syscallKeys[map] = nil
        }
        for (map, condition) in metadata.catchAllKeyConditions where !holds(condition) {
            result.catchAllKeys[map] = nil
        }
        for (type, unit) in metadata.slotUnits {
            guard let question = unit.firstIndex(of: "?"), let colon = unit.firstIndex(of: ":") else { continue }
            let flag = String(unit[..<question])
            result.slotUnits[type] = holds(flag) ? String(unit[unit.index(after: question)..<colon]) : String(unit[unit.index(after: colon)...])
        }
        return result
    }
}

/// Just enough JSON to read the metadata section (and, in tests, kprobe-run's own lines).
indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    var stringMap: [String: String]? {
        guard case let .object(fields) = self else { return nil }
        var result: [String: String] = [:]
        for (key, value) in fields {
            if case let .string(text) = value { result[key] = text }
        }
        return result
    }

    /// nil unless the whole text is one JSON value.
    static func parse(_ text: String) -> JSONValue? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value() else { return nil }
        parser.skipSpace()
        return parser.index == parser.bytes.count ? value : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[index]) { index += 1 }
        }

        mutating func value(depth: Int = 0) -> JSONValue? {
            skipSpace()
            guard index < bytes.count, depth < 64 else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "{"): return object(depth: depth)
            case UInt8(ascii: "["): return array(depth: depth)
            case UInt8(ascii: "\""): return string().map(JSONValue.string)
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            default: return number()
            }
        }

        mutating func literal(_ word: String, _ result: JSONValue) -> JSONValue? {
            let utf8 = Array(word.utf8)
            guard index + utf8.count <= bytes.count, Array(bytes[index..<(index + utf8.count)]) == utf8 else { return nil }
            index += utf8.count
            return result
        }

        mutating func number() -> JSONValue? {
            let start = index
            while index < bytes.count, "+-.0123456789eE".utf8.contains(bytes[index]) { index += 1 }
            guard index > start, let value = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else { return nil }
            return .number(value)
        }

        mutating func string() -> String? {
            index += 1
            var scalars = String.UnicodeScalarView()
            var pending: [UInt8] = []
            func flush() {
                scalars.append(contentsOf: String(decoding: pending, as: UTF8.self).unicodeScalars)
                pending.removeAll()
            }
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if byte == UInt8(ascii: "\"") {
                    flush()
                    return String(scalars)
                }
                guard byte == UInt8(ascii: "\\") else {
                    guard byte >= 0x20 else { return nil }
                    pending.append(byte)
                    continue
                }
                guard index < bytes.count else { return nil }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): pending.append(escape)
                case UInt8(ascii: "n"): pending.append(0x0a)
                case UInt8(ascii: "t"): pending.append(0x09)
                case UInt8(ascii: "r"): pending.append(0x0d)
                case UInt8(ascii: "b"): pending.append(0x08)
                case UInt8(ascii: "f"): pending.append(0x0c)
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count,
                          let code = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16) else { return nil }
                    index += 4
                    flush()
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default:
                    return nil
                }
            }
            return nil
        }

        mutating func array(depth: Int) -> JSONValue? {
            index += 1
            var items: [JSONValue] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            while true {
                guard let item = value(depth: depth + 1) else { return nil }
                items.append(item)
                skipSpace()
                guard index < bytes.count else { return nil }
                index += 1
                if bytes[index - 1] == UInt8(ascii: "]") { return .array(items) }
                guard bytes[index - 1] == UInt8(ascii: ",") else { return nil }
            }
        }

        mutating func object(depth: Int) -> JSONValue? {
            index += 1
            var fields: [String: JSONValue] = [:]
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(fields)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = string() else { return nil }
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                index += 1
                guard let item = value(depth: depth + 1) else { return nil }
                fields[key] = item
                skipSpace()
                guard index < bytes.count else { return nil }
                index += 1
                if bytes[index - 1] == UInt8(ascii: "}") { return .object(fields) }
                guard bytes[index - 1] == UInt8(ascii: ",") else { return nil }
            }
        }
    }
}
