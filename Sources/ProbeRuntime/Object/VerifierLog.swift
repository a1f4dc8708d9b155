import KprobeSupport

/// Picks the useful part out of libbpf's captured output after a failed load.
enum VerifierLog {
    static let beginMarker = "-- BEGIN PROG LOAD LOG --"
    static let endMarker = "-- END PROG LOAD LOG --"

    /// The last `limit` lines of the last verifier log in `log`, or nil when there is none.
    static func tail(of log: String, limit: Int = 40) -> [String]? {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let end = lines.lastIndex(where: { $0.contains(endMarker) }) else { return nil }
        let begin = lines[..<end].lastIndex(where: { $0.contains(beginMarker) }).map { $0 + 1 } ?? 0
        var body = Array(lines[begin..<end])
        while let last = body.last, last.trimmingSpaces.isEmpty { body.removeLast() }
        guard !body.isEmpty else { return nil }
        if body.count > limit {
            return ["... (\(body.count - limit) earlier lines of the verifier log omitted)"] + body.suffix(limit)
        }
        return body
    }

    /// libbpf's own warnings (lines starting "libbpf: "), without the verifier log, for errors
    /// such as a missing BTF function or a map that cannot be created.
    static func warnings(in log: String, limit: Int = 8) -> [String] {
        var inside = false
        var result: [String] = []
        for line in log.split(separator: "\n") {
            if line.contains(beginMarker) { inside = true; continue }
            if line.contains(endMarker) { inside = false; continue }
            // libbpf does not know the BCC front end's metadata section and says so; harmless.
            if !inside, line.hasPrefix("libbpf: "), !line.contains(ObjectMetadata.sectionName) { result.append(String(line)) }
        }
        return Array(result.suffix(limit))
    }
}
