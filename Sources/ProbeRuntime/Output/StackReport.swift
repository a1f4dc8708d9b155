/// A map whose keys or values hold stack ids, with every id resolved to symbolized frames.
///
/// Text: per entry (largest count first) a line `key fields: value`, then each stack under its
/// label (`kern_stack:`), leaf frame first, as BCC's tools print them. Folded:
/// `comm;root frame;…;leaf frame count`, user frames then kernel frames (flamegraph.pl's input).
/// JSON (`JSONOutput`): the map line, each entry with `"stacks":{"kern_stack":["vfs_read+0x10",…],…}`
/// (null for an id that could not be resolved).
struct StackReport {
    struct Entry {
        var key: Value
        var value: Value
        var stacks: [(label: String, frames: Result<[Frame], StackError>)]
    }

    var name: String
    var entries: [Entry]

    init(name: String, entries: [Entry]) {
        self.name = name
        self.entries = entries
    }

    init(name: String, entries: [(key: Value, value: Value)], resolver: StackResolver) {
        resolver.newReport()
        self.name = name
        self.entries = entries.map { entry in
            let pid = StackReport.pid(in: entry.key) ?? StackReport.pid(in: entry.value)
            let fields = MapReader.stackFields(entry.key) + MapReader.stackFields(entry.value)
            return Entry(key: entry.key, value: entry.value, stacks: fields.map { field in
                (StackResolver.label(field.name), resolver.frames(id: field.id, pid: pid))
            })
        }
    }

    static func pid(in value: Value) -> Int32? {
        guard case let .structure(fields) = value else { return nil }
        for name in ["pid", "tgid"] {
            if let integer = fields.first(where: { $0.name == name })?.value.integer, let pid = Int32(exactly: integer) { return pid }
        }
        return nil
    }

    var text: [String] {
        guard !entries.isEmpty else { return ["\(name): (empty)"] }
        var lines = ["\(name):"]
        for entry in entries {
            lines.append("  \(entry.key.line): \(entry.value.line)")
            for stack in entry.stacks {
                lines.append("    \(stack.label):")
                switch stack.frames {
                case let .success(frames):
                    if frames.isEmpty { lines.append("      [empty stack]") }
                    for frame in frames { lines.append("      " + frame.text) }
                case let .failure(error):
                    lines.append("      " + error.text)
                }
            }
        }
        return lines
    }

    var folded: [String] {
        entries.map { entry in
            var parts = [StackReport.process(entry, map: name)]
            var user: [Frame] = [], kernel: [Frame] = []
            for stack in entry.stacks {
                guard case let .success(frames) = stack.frames else { continue }
                for frame in frames.reversed() {
                    if frame.isKernel { kernel.append(frame) } else { user.append(frame) }
                }
            }
            parts += user.map(\.foldedName) + kernel.map(\.foldedName)
            return parts.joined(separator: ";") + " \(StackReport.count(entry.value))"
        }
    }

    /// The first frame of a folded line: the command name, else `pid:N`, else the map name.
    static func process(_ entry: Entry, map: String) -> String {
        for value in [entry.key, entry.value] {
            guard case let .structure(fields) = value else { continue }
            if case let .string(comm)? = fields.first(where: { $0.name == "comm" })?.value, !comm.isEmpty {
                return String(comm.map { $0 == " " || $0 == ";" || $0.isNewline ? "_" : $0 })
            }
        }
        if let pid = pid(in: entry.key) ?? pid(in: entry.value) { return "pid:\(pid)" }
        return map
    }

    /// The sample count: the value, or the first integer field of a struct value, else 1.
    static func count(_ value: Value) -> UInt64 {
        if let integer = value.integer { return UInt64(clamping: integer) }
        if case let .structure(fields) = value, let integer = fields.lazy.compactMap({ $0.value.integer }).first {
            return UInt64(clamping: integer)
        }
        return 1
    }
}
