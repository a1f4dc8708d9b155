/// The contents of one map, decoded and ordered for printing.
struct MapReport {
    var name: String
    var entries: [(key: Value, value: Value)]
    /// The header of a key column that is not a struct ("variable" for globals).
    var keyTitle = "key"

    init(name: String, entries: [(key: Value, value: Value)], keyTitle: String = "key") {
        self.name = name
        self.entries = entries
        self.keyTitle = keyTitle
    }

    /// Text: the map name, a header row naming the columns, then one aligned row per entry.
    /// Struct keys and values are split into one column per field (when every entry has the
    /// same fields); other keys and values are one column each, `key` and `value`. Numbers are
    /// right-aligned, everything else left-aligned.
    var text: [String] {
        guard !entries.isEmpty else { return ["\(name): (empty)"] }
        let keyColumns = MapReport.columns(entries.map(\.key), single: keyTitle)
        let valueColumns = MapReport.columns(entries.map(\.value), single: "value")
        let columns = keyColumns + valueColumns
        let widths = columns.map { column in max(column.title.count, column.cells.map(\.count).max() ?? 0) }
        func row(_ cells: [String]) -> String {
            var line = " "
            for (index, cell) in cells.enumerated() {
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                line += " " + (columns[index].numeric ? padding + cell : cell + padding)
                if index < cells.count - 1 { line += " " }
            }
            while line.last == " " { line.removeLast() }
            return line
        }
        var lines = ["\(name):", row(columns.map(\.title))]
        for index in entries.indices {
            lines.append(row(columns.map { $0.cells[index] }))
        }
        return lines
    }

    struct Column {
        var title: String
        var cells: [String]
        var numeric: Bool
    }

    /// One column per struct field when all values are structs with the same field names,
    /// else a single column.
    static func columns(_ values: [Value], single: String) -> [Column] {
        if case let .structure(first)? = values.first, !first.isEmpty {
            let names = first.map(\.name)
            let rows: [[Value]]? = values.reduce(into: [[Value]]?.some([])) { rows, value in
                guard case let .structure(fields) = value, fields.map(\.name) == names else { rows = nil; return }
                rows?.append(fields.map(\.value))
            }
            if let rows, Set(names).count == names.count, !names.contains("") {
                return names.indices.map { index in
                    column(names[index], rows.map { $0[index] })
                }
            }
        }
        return [column(single, values)]
    }

    private static func column(_ title: String, _ values: [Value]) -> Column {
        let numeric = values.allSatisfy { value in
            if value.integer != nil { return true }
            if case .float = value { return true }
            return false
        }
        return Column(title: title, cells: values.map { value in
            if case let .structure(fields) = value { return fields.map { "\($0.name)=\($0.value.text)" }.joined(separator: " ") }
            return value.text
        }, numeric: numeric)
    }

    /// Hash-like maps whose values are single integers, or structs with an integer `count`
    /// field (libbpf-tools' syscount), sort by that count, largest first (a count table);
    /// everything else sorts by key, numerically where the keys are integers.
    static func ordered(_ entries: [(key: Value, value: Value)], byValue: Bool) -> [(key: Value, value: Value)] {
        if byValue {
            let counts = entries.map { count(in: $0.value) }
            if counts.allSatisfy({ $0 != nil }) {
                return zip(entries, counts).sorted { a, b in
                    a.1! != b.1! ? a.1! > b.1! : keyOrder(a.0.key, b.0.key)
                }.map(\.0)
            }
        }
        return entries.sorted { keyOrder($0.key, $1.key) }
    }

    private static func count(in value: Value) -> Int128? {
        if let integer = value.integer { return integer }
        if case let .structure(fields) = value { return fields.first { $0.name == "count" }?.value.integer }
        return nil
    }

    static func keyOrder(_ a: Value, _ b: Value) -> Bool {
        if let x = a.integer, let y = b.integer { return x < y }
        return a.line < b.line
    }
}
