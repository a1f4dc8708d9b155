import CClang
import KprobeSupport

struct Table {
    var name: String
    var kind: String
    var keyType: String
    var leafType: String
    var keyIsInt: Bool
    var maxEntries: Int
    var flags: Int
    var range: Range<Int>

    /// An array or hash of maps: its values are other maps (`kind` ends with the inner map's name).
    var isMapOfMaps: Bool { kind.hasPrefix("array_of_maps$") || kind.hasPrefix("hash_of_maps$") }
}

/// Tables: each BPF_HASH(…)-style declaration becomes a BTF-defined map.
extension Rewriter {
    mutating func declareTable(_ cursor: CXCursor) throws(Failure) {
        let annotation = children(of: cursor).first { $0.kind == CXCursor_AnnotateAttr }?.spelling ?? ""
        let marker = "kprobe_run_bcc_table:"
        guard annotation.hasPrefix(marker) else { return }
        let kind = String(annotation.dropFirst(marker.count))
        let name = cursor.spelling
        guard let range = range(of: cursor) else {
            problems.append("\(path): table \(name) is declared where it cannot be rewritten (inside another macro); declare it with BPF_HASH(…) and friends at file scope")
            return
        }
        var fields: [String: CXType] = [:]
        for field in children(of: clang_getTypeDeclaration(cursor.type)) where field.kind == CXCursor_FieldDecl {
            fields[field.spelling] = field.type
        }
        guard let key = fields["__key"]?.pointee, let leaf = fields["__leaf"]?.pointee,
              let max = fields["__max_entries"], let flags = fields["__flags"] else {
            throw Failure(.internal, "the BCC prelude's table shape changed; table \(name) lacks its fields")
        }
        let table = Table(name: name, kind: kind, keyType: spelling(of: key), leafType: spelling(of: leaf),
                          keyIsInt: key.canonical.kind == CXType_Int || key.canonical.kind == CXType_UInt,
                          maxEntries: Int(clang_getArraySize(max)) - 1, flags: Int(clang_getArraySize(flags)) - 1, range: range)
        // The declaration's extent ends at the table's name; its macro's, after the types.
        let end = macroRanges.first { $0.lowerBound == range.lowerBound }?.upperBound ?? range.upperBound
        for type in [key, leaf] where !isComplete(type, before: end) {
            problems.append("\(path):\(line(of: range.lowerBound)): table \(name) uses \(type.spelling) before its definition; define the type above the table")
        }
        tables[name] = table
        tableUSRs[cursor.usr] = name
        metadata.tables[name] = kind
        if kind == "stacktrace" { metadata.stackTraces.append(name) }
    }

    /// Whether a struct or union type is defined before `offset` of the main file (or outside
    /// it; or in the table's own declaration), as the map's key and value sizes need: C, and
    /// BCC, take no later definition.
    func isComplete(_ type: CXType, before offset: Int) -> Bool {
        let declaration = clang_getTypeDeclaration(type.canonical)
        guard declaration.kind == CXCursor_StructDecl || declaration.kind == CXCursor_UnionDecl else { return true }
        let definition = clang_getCursorDefinition(declaration)
        guard clang_Cursor_isNull(definition) == 0 else { return false }
        guard let place = range(of: definition) else { return true }
        return place.upperBound <= offset
    }

    /// A type as the map definition can name it: an unnamed struct or union by its definition.
    func spelling(of type: CXType) -> String {
        let spelling = type.spelling
        guard spelling.contains("(unnamed") || spelling.contains("(anonymous"),
              let definition = range(of: clang_getTypeDeclaration(type)) else { return spelling }
        return text(definition).replacingAll("\n", with: " ")
    }

    mutating func emitTable(_ table: Table) {
        // The declaration's extent ends at the table's name, inside the macro's parentheses.
        let range = macroRanges.first { $0.lowerBound == table.range.lowerBound && $0.upperBound >= table.range.upperBound } ?? table.range
        var members: [String]
        func typed(_ mapType: String) -> [String] {
            var result = ["__uint(type, \(mapType))", "__uint(max_entries, \(table.maxEntries))",
                          "__type(key, \(table.keyType))", "__type(value, \(table.leafType))"]
            if table.flags != 0 { result.append("__uint(map_flags, \(table.flags))") }
            return result
        }
        switch table.kind {
        case "hash": members = typed("BPF_MAP_TYPE_HASH")
        case "array": members = typed("BPF_MAP_TYPE_ARRAY")
        case "percpu_hash": members = typed("BPF_MAP_TYPE_PERCPU_HASH")
        case "percpu_array": members = typed("BPF_MAP_TYPE_PERCPU_ARRAY")
        case "lru_hash": members = typed("BPF_MAP_TYPE_LRU_HASH")
        case "lru_percpu_hash": members = typed("BPF_MAP_TYPE_LRU_PERCPU_HASH")
        case "lpm_trie": members = typed("BPF_MAP_TYPE_LPM_TRIE")
        case "histogram": members = typed(table.keyIsInt ? "BPF_MAP_TYPE_ARRAY" : "BPF_MAP_TYPE_HASH")
        case "perf_output":
            members = ["__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY)", "__uint(key_size, sizeof(int))", "__uint(value_size, sizeof(__u32))"]
        case "ringbuf":
            members = ["__uint(type, BPF_MAP_TYPE_RINGBUF)", "__uint(max_entries, \(table.maxEntries))"]
        case "perf_array":
            members = ["__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(int))", "__uint(value_size, sizeof(__u32))"]
        case "stacktrace_buildid":
            members = ["__uint(type, BPF_MAP_TYPE_STACK_TRACE)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(__u32))", "__uint(value_size, 127 * sizeof(struct bpf_stack_build_id))",
                       "__uint(map_flags, BPF_F_STACK_BUILD_ID)"]
        case _ where table.isMapOfMaps:
            let parts = table.kind.split(separator: "$", maxSplits: 1).map(String.init)
            guard let inner = tables[parts[1]] else {
                problems.append("\(path):\(line(of: table.range.lowerBound)): map of maps \(table.name) names \"\(parts[1])\" as its inner map, which is not a table of this program; declare it before with BPF_ARRAY(…) or friends")
                return
            }
            guard inner.range.upperBound <= table.range.lowerBound else {
                problems.append("\(path):\(line(of: table.range.lowerBound)): map of maps \(table.name) comes before its inner map \(inner.name); declare \(inner.name) first")
                return
            }
            members = ["__uint(type, BPF_MAP_TYPE_\(parts[0] == "array_of_maps" ? "ARRAY" : "HASH")_OF_MAPS)",
                       "__uint(max_entries, \(table.maxEntries))", "__type(key, \(table.keyType))",
                       "__array(values, __typeof__(\(inner.name)))"]
        case "stacktrace":
            members = ["__uint(type, BPF_MAP_TYPE_STACK_TRACE)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(__u32))", "__uint(value_size, 127 * sizeof(__u64))"]
        case "prog":
            members = ["__uint(type, BPF_MAP_TYPE_PROG_ARRAY)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(__u32))", "__uint(value_size, sizeof(__u32))"]
        case "queue", "stack":
            members = ["__uint(type, BPF_MAP_TYPE_\(table.kind.uppercased()))", "__uint(max_entries, \(table.maxEntries))",
                       "__type(value, \(table.leafType))"]
        default:
            problems.append("\(path):\(line(of: table.range.lowerBound)): table \(table.name) has kind \"\(table.kind)\", which kprobe-run does not support; use hash, array, histogram, percpu_hash, percpu_array, lru_hash, lru_percpu_hash, lpm_trie, perf_output, perf_array, ringbuf, stacktrace, stacktrace_buildid, prog, queue, stack, array_of_maps or hash_of_maps")
            return
        }
        let definition = "struct { " + members.map { $0 + "; " }.joined() + "} \(table.name) SEC(\".maps\")"
        edits.replace(range, with: [.text(definition + String(repeating: "\n", count: newlines(in: range)))])
    }
}
