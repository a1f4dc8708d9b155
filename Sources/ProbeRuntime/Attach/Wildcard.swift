import Glibc
import KprobeSupport

/// Shell wildcards (`*`, `?`, `[…]`) in attach targets, as funccount and bpftrace take them:
/// `kprobe:vfs_*` attaches one program at every kernel function whose name matches.
enum Wildcard {
    /// More matches than this is almost always a pattern wider than meant (`kprobe:*` would
    /// place tens of thousands of probes and stall the machine while doing it); BCC refuses
    /// more than 1000 probes at once too.
    static let limit = 1000

    static func isPattern(_ text: String) -> Bool {
        text.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }

    static func matches(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }

    /// The names matching `pattern`, in the order given and each once. `noun` names the kind of
    /// thing and `source` where the names came from, and `listing` is the `-l` pattern that shows
    /// the candidates, for the errors: none matching, or more than `limit`.
    static func expand(_ pattern: String, in names: [String], noun: String, source: String, listing: String) throws(RuntimeError) -> [String] {
        var seen = Set<String>()
        let matched = names.filter { matches(pattern, $0) && seen.insert($0).inserted }
        if matched.isEmpty {
            throw RuntimeError(.attach, "no \(noun) in \(source) matches '\(pattern)'; see what there is with kprobe-run -l '\(listing)'")
        }
        if matched.count > limit {
            throw RuntimeError(.attach, "'\(pattern)' matches \(matched.count) \(noun)s in \(source), more than the \(limit) kprobe-run attaches at once (e.g. \(matched.prefix(3).joined(separator: ", ")), …); narrow the pattern")
        }
        return matched
    }
}
