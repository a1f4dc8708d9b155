/// The contents of one map at exit, decoded and ordered for printing.
struct MapReport {
    var name: String
    var entries: [(key: Value, value: Value)]

    /// Text: the map name, then one aligned `key  value` row per entry.
    var text: [String] {
        guard !entries.isEmpty else { return ["\(name): (empty)"] }
        let keys = entries.map { $0.key.line }
        let width = keys.map(\.count).max() ?? 0
        let numeric = entries.allSatisfy { $0.value.integer != nil }
        let values = entries.map { $0.value.line }
        let valueWidth = numeric ? (values.map(\.count).max() ?? 0) : 0
        var lines = ["\(name):"]
        for (key, value) in zip(keys, values) {
            let keyPadding = String(repeating: " ", count: width - key.count)
            let valuePadding = String(repeating: " ", count: max(0, valueWidth - value.count))
            lines.append("  " + key + keyPadding + "  " + valuePadding + value)
        }
        return lines
    }

    var json: String {
        var out = "{\"type\":\"map\",\"name\":"
        JSON.writeString(name, into: &out)
        out += ",\"entries\":["
        for (index, entry) in entries.enumerated() {
            if index > 0 { out += "," }
            out += "{\"key\":"
            entry.key.writeJSON(into: &out)
            out += ",\"value\":"
            entry.value.writeJSON(into: &out)
            out += "}"
        }
        out += "]}"
        return out
    }

    /// Hash-like maps whose values are single integers sort by value, largest first (a count
    /// table); everything else sorts by key, numerically where the keys are integers.
    static func ordered(_ entries: [(key: Value, value: Value)], byValue: Bool) -> [(key: Value, value: Value)] {
        if byValue, entries.allSatisfy({ $0.value.integer != nil }) {
            return entries.sorted { a, b in
                let x = a.value.integer!, y = b.value.integer!
                return x != y ? x > y : keyOrder(a.key, b.key)
            }
        }
        return entries.sorted { keyOrder($0.key, $1.key) }
    }

    private static func keyOrder(_ a: Value, _ b: Value) -> Bool {
        if let x = a.integer, let y = b.integer { return x < y }
        return a.line < b.line
    }
}
