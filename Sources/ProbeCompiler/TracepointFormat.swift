import KprobeSupport

/// BCC's `args` for TRACEPOINT_PROBE: a struct laid out like the tracepoint's record, generated
/// from the format file the kernel publishes in tracefs.
public enum TracepointFormat {
    public struct Field: Sendable, Equatable {
        public var declaration: String
        public var offset: Int
        public var size: Int
        public var isSigned: Bool
    }

    /// The tracepoints a BCC program names: TRACEPOINT_PROBE(category, event) and functions or
    /// types named tracepoint__category__event.
    public static func referencedTracepoints(in source: String) -> [(category: String, event: String)] {
        let code = Dialect.stripCommentsAndStrings(source)
        var found: [(String, String)] = []
        var seen = Set<String>()
        func add(_ category: String, _ event: String) {
            guard !category.isEmpty, !event.isEmpty, seen.insert(category + "/" + event).inserted else { return }
            found.append((category, event))
        }
        let bytes = Array(code.utf8)
        let macro = Array("TRACEPOINT_PROBE(".utf8)
        let prefix = Array(BCCName.tracepointPrefix.utf8)
        var i = 0
        while i < bytes.count {
            let atWordStart = i == 0 || !Dialect.isIdentifierByte(bytes[i - 1])
            if atWordStart, bytes[i...].starts(with: macro) {
                var j = i + macro.count
                let category = identifier(bytes, &j)
                while j < bytes.count && (bytes[j] == UInt8(ascii: " ") || bytes[j] == UInt8(ascii: ",") || bytes[j] == UInt8(ascii: "\t")) { j += 1 }
                add(category, identifier(bytes, &j))
                i = j
            } else if atWordStart, bytes[i...].starts(with: prefix) {
                var j = i + prefix.count
                if case .tracepoint(let category, let event) = BCCName(function: BCCName.tracepointPrefix + identifier(bytes, &j)) {
                    add(category, event)
                }
                i = j
            } else {
                i += 1
            }
        }
        return found
    }

    private static func identifier(_ bytes: [UInt8], _ index: inout Int) -> String {
        while index < bytes.count && (bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t")) { index += 1 }
        let start = index
        while index < bytes.count && Dialect.isIdentifierByte(bytes[index]) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// The fields of a format file's text (common_ fields included).
    public static func fields(format: String) -> [Field] {
        var fields: [Field] = []
        for line in format.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard trimmed.hasPrefix("field:") else { continue }
            var declaration = "", offset: Int?, size: Int?, signed = false
            for part in trimmed.split(separator: ";") {
                let item = part.drop { $0 == " " || $0 == "\t" }
                if item.hasPrefix("field:") { declaration = String(item.dropFirst(6)) }
                else if item.hasPrefix("offset:") { offset = Int(item.dropFirst(7)) }
                else if item.hasPrefix("size:") { size = Int(item.dropFirst(5)) }
                else if item.hasPrefix("signed:") { signed = item.dropFirst(7) == "1" }
            }
            if let offset, let size { fields.append(Field(declaration: declaration, offset: offset, size: size, isSigned: signed)) }
        }
        return fields
    }

    /// `struct tracepoint__CATEGORY__EVENT { … };` for a format file's text: the common fields
    /// folded into padding, every other field at its offset, with a type of its size.
    public static func structDefinition(category: String, event: String, format: String) -> String {
        var lines = ["struct \(BCCName.tracepoint(category: category, event: event).name) {"]
        var position = 0
        var padding = 0
        for field in fields(format: format).sorted(by: { $0.offset < $1.offset }) {
            if field.declaration.hasPrefix("common_") || field.declaration.contains(" common_") { continue }
            guard field.offset >= position else { continue }
            if field.offset > position {
                lines.append("    char __pad\(padding)[\(field.offset - position)];")
                padding += 1
            }
            lines.append("    " + member(field) + ";")
            position = field.offset + field.size
        }
        lines.append("};")
        return lines.joined(separator: "\n")
    }

    /// Reads `events/CATEGORY/EVENT/format` under `tracefs` (a mounted tracefs directory).
    public static func structDefinition(category: String, event: String, tracefs: String) throws(Failure) -> String {
        let path = "\(tracefs)/events/\(category)/\(event)/format"
        let format: String
        do {
            format = try FileSystem.readString(path)
        } catch {
            throw Failure(.compile, "tracepoint \(category):\(event) does not exist on this kernel (cannot read \(path): \(error)); list the available ones with 'ls \(tracefs)/events/\(category)'")
        }
        return structDefinition(category: category, event: event, format: format)
    }

    /// Where the BCC prelude looks for the generated `args` structs.
    public static let headerPath = "/kprobe-run/include/bcc/tracepoints.h"

    /// The header the BCC prelude includes when present: the args structs of every tracepoint the
    /// program names. Nil when it names none.
    public static func header(for source: String, tracefs: String) throws(Failure) -> VirtualFile? {
        let tracepoints = referencedTracepoints(in: source)
        guard !tracepoints.isEmpty else { return nil }
        var text = "#pragma once\n"
        for (category, event) in tracepoints {
            text += try structDefinition(category: category, event: event, tracefs: tracefs) + "\n"
        }
        return VirtualFile(path: headerPath, contents: text)
    }

    static let plainTypeWords: Set<String> = [
        "const", "volatile", "unsigned", "signed", "char", "short", "int", "long", "void", "bool", "_Bool",
        "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64",
        "__u8", "__u16", "__u32", "__u64", "__s8", "__s16", "__s32", "__s64",
    ]

    /// A member declaration for one field. Kernel typedefs and enums become integers of the
    /// field's size, so the struct needs no kernel header; pointers to structs stay as written.
    static func member(_ field: Field) -> String {
        var declaration = String(field.declaration.trimmingSpaces)
        if declaration.hasPrefix("__data_loc ") {
            let name = declaration.split(separator: " ").last.map { String($0) } ?? "field"
            return "int data_loc_\(name.split(separator: "[").first ?? "")"
        }
        var arrayCount: Int?
        var arraySuffix = ""
        if declaration.hasSuffix("]"), let open = declaration.lastIndex(of: "[") {
            arraySuffix = String(declaration[open...])
            arrayCount = Int(declaration[declaration.index(after: open)..<declaration.index(before: declaration.endIndex)])
            declaration = String(declaration[..<open].trimmingSpaces)
        }
        var nameStart = declaration.endIndex
        while nameStart > declaration.startIndex {
            let previous = declaration.index(before: nameStart)
            guard let ascii = declaration[previous].asciiValue, Dialect.isIdentifierByte(ascii) else { break }
            nameStart = previous
        }
        let name = String(declaration[nameStart...])
        let type = String(declaration[..<nameStart].trimmingSpaces)
        if type.contains("*") {
            let words = type.split(whereSeparator: { $0 == " " || $0 == "*" }).map(String.init)
            let isStructPointer = words.contains("struct") || words.contains("union")
            if isStructPointer || words.allSatisfy({ plainTypeWords.contains($0) }) {
                return "\(type) \(name)\(arraySuffix)"
            }
            return "const void *\(name)\(arraySuffix)"
        }
        if !arraySuffix.isEmpty && arrayCount == nil { return "char \(name)[\(field.size)]" }
        let count = arrayCount ?? 1
        guard count > 0, field.size % count == 0 else { return "char \(name)[\(field.size)]" }
        let elementSize = field.size / count
        let elementType: String
        if type == "char" || type == "const char" {
            elementType = "char"
        } else if [1, 2, 4, 8].contains(elementSize) {
            elementType = (field.isSigned ? "__s" : "__u") + String(elementSize * 8)
        } else {
            return "char \(name)[\(field.size)]"
        }
        return arrayCount == nil ? "\(elementType) \(name)" : "\(elementType) \(name)[\(count)]"
    }
}
