import KprobeSupport

/// One `-a/--attach` argument: attach program `program` (the C function name) at `target`.
///
/// Accepted forms: `kprobe:SYM=FUNC`, `kretprobe:SYM=FUNC`, `tracepoint:CAT:EVENT=FUNC`,
/// `raw_tracepoint:EVENT=FUNC`, `uprobe:PATH:SYM=FUNC`, `uretprobe:PATH:SYM=FUNC`,
/// `usdt:PATH:PROVIDER:NAME=FUNC` (`usdt:PROVIDER:NAME=FUNC` with `-p`: looked for in the files
/// the process maps, as BCC's `USDT(pid=…)` does). Kprobe symbols and tracepoint names may be shell wildcards
/// (`kprobe:vfs_*`, `tracepoint:syscalls:sys_enter_*`): the program is attached at every match.
public struct AttachSpec: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case kprobe, kretprobe, tracepoint
        case rawTracepoint = "raw_tracepoint"
        case uprobe, uretprobe
        case usdt
    }

    public var kind: Kind
    /// "SYM" (kprobes), "CAT:EVENT" (tracepoints), "EVENT" (raw tracepoints), "PATH:SYM" (uprobes),
    /// "PATH:PROVIDER:NAME" (USDT probes).
    public var target: String
    public var program: String

    public static let acceptedForms = [
        "kprobe:SYM=FUNC", "kretprobe:SYM=FUNC", "tracepoint:CAT:EVENT=FUNC",
        "raw_tracepoint:EVENT=FUNC", "uprobe:PATH:SYM=FUNC", "uretprobe:PATH:SYM=FUNC",
        "usdt:PATH:PROVIDER:NAME=FUNC",
    ]

    /// `-a`'s help.
    public static let help = "Attach a function explicitly (repeatable): " + acceptedForms.joined(separator: ", ")
        + " (usdt:PROVIDER:NAME=FUNC with -p: the binary is found among the process's files). Kprobe and tracepoint"
        + " names may be wildcards: kprobe:vfs_*=FUNC, tracepoint:syscalls:sys_enter_*=FUNC."

    public init(kind: Kind, target: String, program: String) {
        self.kind = kind
        self.target = target
        self.program = program
    }

    public init(parsing text: String) throws(Failure) {
        func bad(_ why: String) -> Failure {
            Failure(.usage, "invalid --attach '\(text)': \(why); accepted forms: \(AttachSpec.acceptedForms.joined(separator: ", "))")
        }
        guard let colon = text.firstIndex(of: ":") else { throw bad("missing 'KIND:'") }
        let kindText = String(text[..<colon])
        let kindAliases: [String: Kind] = ["tp": .tracepoint, "raw_tp": .rawTracepoint]
        guard let kind = Kind(rawValue: kindText) ?? kindAliases[kindText] else {
            throw bad("unknown probe kind '\(kindText)'")
        }
        let rest = text[text.index(after: colon)...]
        // The program name is a C identifier, so the last '=' separates it even if a path has one.
        guard let equals = rest.lastIndex(of: "=") else { throw bad("missing '=FUNC' naming the program to attach") }
        let target = String(rest[..<equals])
        let program = String(rest[rest.index(after: equals)...])
        guard AttachSpec.isIdentifier(program) else { throw bad("'\(program)' is not a C function name") }
        guard !target.isEmpty else { throw bad("missing the probe target before '='") }
        if Wildcard.isPattern(target), kind != .kprobe, kind != .kretprobe, kind != .tracepoint {
            throw bad("wildcards are accepted in kprobe, kretprobe and tracepoint names only")
        }
        switch kind {
        case .kprobe, .kretprobe:
            guard !target.contains(":"), !target.contains("/") else { throw bad("expected a kernel symbol, got '\(target)'") }
        case .tracepoint:
            let parts = target.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && !$0.contains("/") }) else {
                throw bad("expected CATEGORY:EVENT, e.g. syscalls:sys_enter_openat")
            }
        case .rawTracepoint:
            guard !target.contains(":"), !target.contains("/") else { throw bad("expected a tracepoint name such as sched_switch") }
        case .uprobe, .uretprobe:
            guard let split = target.lastIndex(of: ":"), split != target.startIndex,
                  target.index(after: split) != target.endIndex
            else { throw bad("expected PATH:SYMBOL, e.g. /bin/bash:readline") }
        case .usdt:
            guard let parts = AttachSpec.usdtParts(target), !parts.provider.isEmpty, !parts.name.isEmpty,
                  !parts.path.isEmpty || !target.hasPrefix(":")
            else { throw bad("expected PATH:PROVIDER:NAME, e.g. /usr/lib/libc.so.6:libc:setjmp (or PROVIDER:NAME with -p)") }
        }
        self.init(kind: kind, target: target, program: program)
    }

    /// For uprobes: the binary and the symbol (split at the last ':').
    var binaryAndSymbol: (path: String, symbol: String)? {
        guard kind == .uprobe || kind == .uretprobe, let split = target.lastIndex(of: ":") else { return nil }
        return (String(target[..<split]), String(target[target.index(after: split)...]))
    }

    /// For USDT probes: the binary, the provider and the probe name (split at the last two ':');
    /// the binary is "" in PROVIDER:NAME.
    static func usdtParts(_ target: String) -> (path: String, provider: String, name: String)? {
        guard let last = target.lastIndex(of: ":") else { return nil }
        let head = target[..<last], name = String(target[target.index(after: last)...])
        guard let middle = head.lastIndex(of: ":") else { return ("", String(head), name) }
        return (String(head[..<middle]), String(head[head.index(after: middle)...]), name)
    }

    public var description: String { "\(kind.rawValue):\(target)=\(program)" }

    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.utf8.first, first == UInt8(ascii: "_") || isLetter(first) else { return false }
        return text.utf8.allSatisfy { $0 == UInt8(ascii: "_") || isLetter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    private static func isLetter(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a }
}
