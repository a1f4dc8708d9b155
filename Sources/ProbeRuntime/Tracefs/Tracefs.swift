import Glibc
import KprobeSupport

/// The tracing filesystem: tracepoint ids, trace_pipe for bpf_printk, kprobe_events.
///
/// Located lazily: kprobe-run only looks for (and if need be mounts) tracefs when a probe needs it.
final class Tracefs {
    static let standardPath = "/sys/kernel/tracing"
    static let debugfsPath = "/sys/kernel/debug/tracing"

    private let log: (String) -> Void
    private var located: String?

    init(log: @escaping (String) -> Void) {
        self.log = log
    }

    /// The mounted tracefs; mounts it at /sys/kernel/tracing when neither usual place has it.
    func path() throws(RuntimeError) -> String {
        if let located { return located }
        for candidate in [Tracefs.standardPath, Tracefs.debugfsPath] where FileSystem.exists(candidate + "/trace_pipe") {
            located = candidate
            return candidate
        }
        if mount("tracefs", Tracefs.standardPath, "tracefs", 0, nil) != 0 {
            let err = Errno.current
            let kind: FailureKind = err.isPermission ? .notPermitted : .internal
            throw RuntimeError(kind, "tracefs is not mounted and mounting it at \(Tracefs.standardPath) failed: \(err); mount it with 'mount -t tracefs tracefs \(Tracefs.standardPath)' (as root)")
        }
        log("mounted tracefs at \(Tracefs.standardPath) (it was not mounted)")
        located = Tracefs.standardPath
        return Tracefs.standardPath
    }

    /// Whether `events/CAT/EVENT` exists.
    func hasTracepoint(category: String, event: String) throws(RuntimeError) -> Bool {
        FileSystem.isDirectory(try path() + "/events/\(category)/\(event)")
    }

    /// Whether the kernel can place kprobes: a kprobe PMU (perf_event_open-based kprobes) or the
    /// legacy kprobe_events interface in tracefs.
    func kprobesSupported() throws(RuntimeError) -> Bool {
        if FileSystem.exists("/sys/bus/event_source/devices/kprobe") { return true }
        return FileSystem.exists(try path() + "/kprobe_events")
    }

    /// Kernel functions a kprobe can be placed on, from ftrace's available_filter_functions
    /// (functions ftrace cannot trace are not in it, so a wildcard never picks them).
    func kernelFunctions() throws(RuntimeError) -> [String] {
        Tracefs.functionNames(availableFilterFunctions: try read("available_filter_functions", for: "the kernel's traceable functions"))
    }

    /// Every tracepoint as "CATEGORY:EVENT", from available_events.
    func tracepoints() throws(RuntimeError) -> [String] {
        try read("available_events", for: "the kernel's tracepoints").split(separator: "\n").map { String($0.trimmingSpaces) }.filter { !$0.isEmpty }
    }

    /// `events/CATEGORY/EVENT/format`: the tracepoint's record layout.
    func format(category: String, event: String) throws(RuntimeError) -> String {
        try read("events/\(category)/\(event)/format", for: "the layout of tracepoint \(category):\(event)")
    }

    /// Lines are "name" or "name [module]"; a static function can appear more than once.
    static func functionNames(availableFilterFunctions text: String) -> [String] {
        var seen = Set<String>()
        return text.split(separator: "\n").compactMap { line in
            guard let name = line.split(separator: " ", maxSplits: 1).first.map(String.init), seen.insert(name).inserted else { return nil }
            return name
        }
    }

    private func read(_ file: String, for what: String) throws(RuntimeError) -> String {
        let path = try path() + "/" + file
        do {
            return try FileSystem.readString(path)
        } catch {
            throw RuntimeError(error.isPermission ? .notPermitted : .internal, "cannot read \(path) (\(what)): \(error)" + (error.isPermission && geteuid() != 0 ? "; run kprobe-run as root" : ""))
        }
    }

    /// Opens trace_pipe for non-blocking reads.
    func openTracePipe() throws(RuntimeError) -> Int32 {
        let file = try path() + "/trace_pipe"
        let fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let err = Errno.current
            throw RuntimeError(err.isPermission ? .notPermitted : .internal, "cannot open \(file) for bpf_printk output: \(err)")
        }
        return fd
    }
}

/// One line of trace_pipe written by bpf_printk (bpf_trace_printk).
///
/// trace_pipe lines look like `  bash-1234  [001] d..31  5678.901234: bpf_trace_printk: message`;
/// the task part may itself contain spaces and dashes, so it is parsed from the right.
struct PrintkLine: Equatable, Sendable {
    var task: String
    var pid: Int?
    var cpu: Int?
    var timestamp: String
    var message: String

    static let marker = ": bpf_trace_printk: "

    init(task: String, pid: Int?, cpu: Int?, timestamp: String, message: String) {
        self.task = task
        self.pid = pid
        self.cpu = cpu
        self.timestamp = timestamp
        self.message = message
    }

    /// nil for lines of other trace events, which are not ours to print.
    init?(parsing line: Substring) {
        guard let marker = line.firstRange(of: PrintkLine.marker) else { return nil }
        message = String(line[marker.upperBound...])
        let head = line[..<marker.lowerBound].trimmingSpaces
        let words = head.split(separator: " ", omittingEmptySubsequences: true)
        timestamp = words.last.map(String.init) ?? ""
        guard let bracket = head.lastIndex(of: "["), let close = head[bracket...].firstIndex(of: "]") else {
            task = ""
            pid = nil
            cpu = nil
            return
        }
        cpu = Int(head[head.index(after: bracket)..<close])
        let taskPart = head[..<bracket].trimmingSpaces
        if let dash = taskPart.lastIndex(of: "-"), let number = Int(taskPart[taskPart.index(after: dash)...]) {
            task = String(taskPart[..<dash])
            pid = number
        } else {
            task = String(taskPart)
            pid = nil
        }
    }
}
