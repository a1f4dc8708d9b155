/// BCC's naming convention: a function named `kprobe__SYM`, `kretprobe__SYM`,
/// `tracepoint__CATEGORY__EVENT` or `raw_tracepoint__EVENT` attaches where its name says. The
/// rewriter turns the name into a SEC(), the runtime attaches by it, the dialect detector and the
/// tracepoint-struct generator look for it (`struct tracepoint__CATEGORY__EVENT` is the type of
/// TRACEPOINT_PROBE's `args`).
public enum BCCName: Equatable, Sendable {
    case kprobe(symbol: String)
    case kretprobe(symbol: String)
    case tracepoint(category: String, event: String)
    case rawTracepoint(event: String)

    public static let kprobePrefix = "kprobe__"
    public static let kretprobePrefix = "kretprobe__"
    public static let tracepointPrefix = "tracepoint__"
    public static let rawTracepointPrefix = "raw_tracepoint__"
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
        }
    }
}
