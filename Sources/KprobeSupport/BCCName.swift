/// BCC's naming convention: a function named `kprobe__SYM`, `kretprobe__SYM`,
/// `tracepoint__CATEGORY__EVENT` or `raw_tracepoint__EVENT` attaches where its name says, and so
/// do the functions BCC's KFUNC_PROBE, KRETFUNC_PROBE, LSM_PROBE and KMOD_RET define. The
/// rewriter turns the name into a SEC(), the runtime attaches by it, the dialect detector and the
/// tracepoint-struct generator look for it (`struct tracepoint__CATEGORY__EVENT` is the type of
/// TRACEPOINT_PROBE's `args`).
public enum BCCName: Equatable, Sendable {
    case kprobe(symbol: String)
    case kretprobe(symbol: String)
    case tracepoint(category: String, event: String)
    case rawTracepoint(event: String)
    /// KFUNC_PROBE / KRETFUNC_PROBE / LSM_PROBE / KMOD_RET: BTF-typed attach points.
    case kfunc(function: String)
    case kretfunc(function: String)
    case lsm(hook: String)
    case kmodRet(function: String)

    public static let kprobePrefix = "kprobe__"
    public static let kretprobePrefix = "kretprobe__"
    public static let tracepointPrefix = "tracepoint__"
    public static let rawTracepointPrefix = "raw_tracepoint__"
    /// BCC 0.26 names fentry programs by module and function: `kfunc__vmlinux__vfs_read`.
    public static let kfuncPrefix = "kfunc__vmlinux__"
    public static let kretfuncPrefix = "kretfunc__vmlinux__"
    public static let lsmPrefix = "lsm__"
    public static let kmodRetPrefix = "kmod_ret__"
    /// Separates a tracepoint's category from its event.
    public static let separator = "__"
    public static let prefixes = [kprobePrefix, kretprobePrefix, tracepointPrefix, rawTracepointPrefix]

    /// The attach point a function's name gives, or nil when it follows no convention.
    public init?(function name: String) {
        func after(_ prefix: String) -> String? {
            guard name.hasPrefix(prefix), name.count > prefix.count else { return nil }
            return String(name.dropFirst(prefix.count))
        }
        if let symbol = after(Self.kprobePrefix) {
            self = .kprobe(symbol: symbol)
        } else if let symbol = after(Self.kretprobePrefix) {
            self = .kretprobe(symbol: symbol)
        } else if let function = after(Self.kfuncPrefix) {
            self = .kfunc(function: function)
        } else if let function = after(Self.kretfuncPrefix) {
            self = .kretfunc(function: function)
        } else if let hook = after(Self.lsmPrefix) {
            self = .lsm(hook: hook)
        } else if let function = after(Self.kmodRetPrefix) {
            self = .kmodRet(function: function)
        } else if let event = after(Self.rawTracepointPrefix) {
            self = .rawTracepoint(event: event)
        } else if let rest = after(Self.tracepointPrefix), let split = rest.firstRange(of: Self.separator),
                  split.lowerBound != rest.startIndex, split.upperBound != rest.endIndex {
            self = .tracepoint(category: String(rest[..<split.lowerBound]), event: String(rest[split.upperBound...]))
        } else {
            return nil
        }
    }

    /// The function (or, for a tracepoint, also the args struct) name that says this.
    public var name: String {
        switch self {
        case .kprobe(let symbol): Self.kprobePrefix + symbol
        case .kretprobe(let symbol): Self.kretprobePrefix + symbol
        case .tracepoint(let category, let event): Self.tracepointPrefix + category + Self.separator + event
        case .rawTracepoint(let event): Self.rawTracepointPrefix + event
        case .kfunc(let function): Self.kfuncPrefix + function
        case .kretfunc(let function): Self.kretfuncPrefix + function
        case .lsm(let hook): Self.lsmPrefix + hook
        case .kmodRet(let function): Self.kmodRetPrefix + function
        }
    }
}
