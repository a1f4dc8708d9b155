import CLibBPF
import KprobeSupport

/// `kprobe-run info`: what a user can choose about an object before running it: its programs
/// (and which of them a run would load here), its maps with the sizes a run would give them,
/// and the globals `--set` can change, with their types and values in the object.
public enum ObjectInfo {
    public static func describe(object bytes: [UInt8], name: String, options: LoadOptions = LoadOptions()) throws(RuntimeError) -> [String] {
        let object = try ProbeObject(bytes: bytes, name: name)
        let defaulted = try object.sizeMaps(options.mapSizes) { _ in }
        try object.setParameters(options.parameters) { _ in }
        try object.plan(specs: [], options: options, requireAttachable: false)
        var lines = ["programs:"]
        lines += table(object.programs.map { program in
            [program.name, "SEC(\"\(program.section)\")", program.leftOut.map { "not loaded: " + $0 } ?? "loads"]
        })
        lines.append("maps:")
        lines += table(object.maps.filter { !$0.isInternal }.map { map in
            let type = libbpf_bpf_map_type_str(map.type).map { String(cString: $0) } ?? "type \(map.type.rawValue)"
            let note = defaulted.contains(map.name) ? " (default)" : ""
            return [map.name, type, "key \(map.keySize) B", "value \(map.valueSize) B", "max_entries \(map.maxEntries)" + note]
        })
        let formatter = BTFFormatter(btf: object.btf)
        let parameters = object.parameters
        lines.append(parameters.isEmpty ? "parameters: none" : "parameters (--set NAME=VALUE):")
        lines += table(parameters.map { parameter in
            let type = ParameterType(btf: object.btf, typeID: parameter.typeID)
            let value = object.initialValue(of: parameter, formatter: formatter)
            let shown: String
            if case let .string(text)? = value { shown = JSON.string(text) } else { shown = value?.text ?? "?" }
            return [parameter.name, type.spelling, shown, parameter.map.name.lastIndex(of: ".").map { String(parameter.map.name[$0...]) } ?? parameter.map.name]
        })
        return lines
    }

    /// Left-aligned columns, two spaces in, two between.
    private static func table(_ rows: [[String]]) -> [String] {
        guard let columns = rows.map(\.count).max() else { return [] }
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            var line = " "
            for (index, cell) in row.enumerated() {
                line += " " + cell + (index < row.count - 1 ? String(repeating: " ", count: widths[index] - cell.count + 1) : "")
            }
            return line
        }
    }
}
