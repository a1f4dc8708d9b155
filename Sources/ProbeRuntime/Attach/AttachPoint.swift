import CLibBPF
import KprobeSupport

/// Where one program goes, decided from its SEC name (libbpf conventions), a BCC-style function
/// name (`kprobe__vfs_read`, `tracepoint__sched__sched_switch`) or an `--attach` spec.
enum AttachPoint: Equatable, Sendable {
    case kprobe(symbol: String, offset: Int, isReturn: Bool)
    case tracepoint(category: String, event: String)
    case rawTracepoint(String)
    case uprobe(path: String, symbol: String, isReturn: Bool)
    /// A USDT probe (`.note.stapsdt`), through libbpf's USDT support: the program reads its
    /// arguments with usdt.bpf.h's `bpf_usdt_arg`. An empty path: whichever file the `-p`
    /// process maps has the probe.
    case usdt(path: String, provider: String, name: String)
    /// A CPU-clock sampling event on every online CPU.
    case perfEvent
    /// A SEC libbpf attaches by itself (fentry/, fexit/, lsm/, tp_btf/, ksyscall/, …).
    case libbpf(section: String)
    /// A tracing SEC without a target, e.g. `SEC("kprobe")`: needs `--attach`.
    case needsSpec(reason: String)
    /// Programs of types kprobe-run does not attach (socket filters, XDP, tc, cgroup, …).
    case notAttached

    /// The program type the point requires, set before load when the SEC did not imply it.
    var programType: bpf_prog_type? {
        switch self {
        case .kprobe, .uprobe, .usdt: return BPF_PROG_TYPE_KPROBE
        case .tracepoint: return BPF_PROG_TYPE_TRACEPOINT
        case .rawTracepoint: return BPF_PROG_TYPE_RAW_TRACEPOINT
        case .perfEvent: return BPF_PROG_TYPE_PERF_EVENT
        case .libbpf, .needsSpec, .notAttached: return nil
        }
    }

    var summary: String {
        switch self {
        case let .kprobe(symbol, offset, isReturn):
            return (isReturn ? "kretprobe:" : "kprobe:") + symbol + (offset != 0 ? "+\(offset)" : "")
        case let .tracepoint(category, event): return "tracepoint:\(category):\(event)"
        case let .rawTracepoint(name): return "raw_tracepoint:\(name)"
        case let .uprobe(path, symbol, isReturn): return (isReturn ? "uretprobe:" : "uprobe:") + path + ":" + symbol
        case let .usdt(path, provider, name): return "usdt:" + (path.isEmpty ? "" : path + ":") + "\(provider):\(name)"
        case .perfEvent: return "perf_event:cpu-clock@99Hz"
        case let .libbpf(section): return "SEC(\"\(section)\")"
        case let .needsSpec(reason): return "unattached (\(reason))"
        case .notAttached: return "not attached"
        }
    }

    init(spec: AttachSpec) {
        switch spec.kind {
        case .kprobe, .kretprobe:
            let (symbol, offset) = AttachPoint.symbolAndOffset(spec.target)
            self = .kprobe(symbol: symbol, offset: offset, isReturn: spec.kind == .kretprobe)
        case .tracepoint:
            let parts = spec.target.split(separator: ":", maxSplits: 1)
            self = .tracepoint(category: String(parts[0]), event: String(parts[1]))
        case .rawTracepoint:
            self = .rawTracepoint(spec.target)
        case .uprobe, .uretprobe:
            let (path, symbol) = spec.binaryAndSymbol!
            self = .uprobe(path: path, symbol: symbol, isReturn: spec.kind == .uretprobe)
        case .usdt:
            let (path, provider, name) = AttachSpec.usdtParts(spec.target)!
            self = .usdt(path: path, provider: provider, name: name)
        }
    }

    /// Classifies by SEC name first; a SEC that names no target falls back to the BCC function
    /// naming convention. `type` is what libbpf derived from the SEC at open.
    static func classify(section: String, function: String, type: bpf_prog_type) -> AttachPoint {
        let fromSection = classify(section: section)
        switch fromSection {
        case .needsSpec, .notAttached:
            if let bcc = classifyBCC(function) ?? classifyBCC(section) { return bcc }
            if case .notAttached = fromSection, isTracingType(type) {
                return .needsSpec(reason: "SEC(\"\(section)\") names no attach point")
            }
            return fromSection
        default:
            return fromSection
        }
    }

    static func classify(section: String) -> AttachPoint {
        let (prefix, target) = split(section)
        switch prefix {
        case "kprobe", "kretprobe":
            guard let target, !target.isEmpty else { return .needsSpec(reason: "SEC(\"\(section)\") names no kernel function") }
            let (symbol, offset) = symbolAndOffset(target)
            return .kprobe(symbol: symbol, offset: offset, isReturn: prefix == "kretprobe")
        case "tracepoint", "tp":
            guard let target else { return .needsSpec(reason: "SEC(\"\(section)\") names no tracepoint") }
            let parts = target.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                return .needsSpec(reason: "SEC(\"\(section)\") is not CATEGORY/EVENT")
            }
            return .tracepoint(category: String(parts[0]), event: String(parts[1]))
        case "raw_tracepoint", "raw_tp":
            guard let target, !target.isEmpty else { return .needsSpec(reason: "SEC(\"\(section)\") names no tracepoint") }
            return .rawTracepoint(target)
        case "uprobe", "uretprobe", "uprobe.s", "uretprobe.s":
            guard let target, let colon = target.lastIndex(of: ":"), colon != target.startIndex else {
                return .needsSpec(reason: "SEC(\"\(section)\") names no BINARY:FUNCTION")
            }
            let symbol = String(target[target.index(after: colon)...])
            guard !symbol.isEmpty else { return .needsSpec(reason: "SEC(\"\(section)\") names no function") }
            return .uprobe(path: String(target[..<colon]), symbol: symbol, isReturn: prefix.hasPrefix("uretprobe"))
        case "usdt":
            guard let target, let parts = AttachSpec.usdtParts(target),
                  !parts.path.isEmpty, !parts.provider.isEmpty, !parts.name.isEmpty else {
                return .needsSpec(reason: "SEC(\"\(section)\") names no BINARY:PROVIDER:NAME")
            }
            return .usdt(path: parts.path, provider: parts.provider, name: parts.name)
        case "perf_event":
            return .perfEvent
        case "fentry", "fexit", "fmod_ret", "fentry.s", "fexit.s", "fmod_ret.s", "lsm", "lsm.s", "iter", "iter.s",
             "tp_btf", "ksyscall", "kretsyscall", "kprobe.multi", "kretprobe.multi",
             "raw_tracepoint.w", "raw_tp.w":
            guard let target, !target.isEmpty else { return .needsSpec(reason: "SEC(\"\(section)\") names no attach target") }
            return .libbpf(section: section)
        default:
            return .notAttached
        }
    }

    /// BCC's naming convention (BCCName).
    static func classifyBCC(_ name: String) -> AttachPoint? {
        switch BCCName(function: name) {
        case .kprobe(let symbol): .kprobe(symbol: symbol, offset: 0, isReturn: false)
        case .kretprobe(let symbol): .kprobe(symbol: symbol, offset: 0, isReturn: true)
        case .rawTracepoint(let event): .rawTracepoint(event)
        case .tracepoint(let category, let event): .tracepoint(category: category, event: event)
        // Their SEC (fentry/, fexit/, lsm/, fmod_ret/) says where; libbpf attaches them.
        case .kfunc, .kretfunc, .lsm, .kmodRet, nil: nil
        }
    }

    /// An --attach example that fits a SEC, for "no attach point" errors. In an object with
    /// libbpf's USDT support (a BCC program reading USDT arguments has SEC("kprobe")), a kprobe
    /// program is most likely a USDT one.
    static func attachExample(section: String, program: String, readsUSDT: Bool = false) -> String {
        let prefix = split(section).0
        if readsUSDT, prefix == "kprobe" || prefix == "usdt" { return "usdt:/PATH/TO/BINARY:PROVIDER:NAME=\(program)" }
        if prefix.hasPrefix("kretprobe") { return "kretprobe:SYMBOL=\(program)" }
        if prefix.hasPrefix("kprobe") || prefix.hasPrefix("ksyscall") { return "kprobe:SYMBOL=\(program)" }
        if prefix.hasPrefix("uretprobe") { return "uretprobe:/PATH/TO/BINARY:SYMBOL=\(program)" }
        if prefix.hasPrefix("uprobe") { return "uprobe:/PATH/TO/BINARY:SYMBOL=\(program)" }
        if prefix == "usdt" { return "usdt:/PATH/TO/BINARY:PROVIDER:NAME=\(program)" }
        if prefix.hasPrefix("raw_t") { return "raw_tracepoint:EVENT=\(program)" }
        return "tracepoint:CATEGORY:EVENT=\(program)"
    }

    /// Program types that only run when attached to a tracing hook.
    static func isTracingType(_ type: bpf_prog_type) -> Bool {
        switch type {
        case BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT,
             BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, BPF_PROG_TYPE_PERF_EVENT, BPF_PROG_TYPE_TRACING,
             BPF_PROG_TYPE_UNSPEC:
            return true
        default:
            return false
        }
    }

    private static func split(_ section: String) -> (String, String?) {
        guard let slash = section.firstIndex(of: "/") else { return (section, nil) }
        return (String(section[..<slash]), String(section[section.index(after: slash)...]))
    }

    static func symbolAndOffset(_ text: String) -> (String, Int) {
        guard let plus = text.lastIndex(of: "+") else { return (text, 0) }
        let offsetText = text[text.index(after: plus)...]
        let offset = offsetText.hasPrefix("0x") ? Int(offsetText.dropFirst(2), radix: 16) : Int(offsetText)
        guard let offset else { return (text, 0) }
        return (String(text[..<plus]), offset)
    }
}
