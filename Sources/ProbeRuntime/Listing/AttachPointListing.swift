import CLibBPF
import Glibc
import KprobeSupport
import ProbeCompiler

/// `kprobe-run -l [PATTERN]`: the attach points this machine offers, as `bpftrace -l` and BCC's
/// tplist list them, one per line in the form `--attach` takes (`kprobe:vfs_read`,
/// `tracepoint:sched:sched_switch`, `raw_tracepoint:sched_switch`, `uprobe:/bin/bash:readline`,
/// `usdt:/path:provider:name`) or the SEC name it stands for (`fentry:vfs_read`), and the perf
/// events (`software:cpu-clock`, `hardware:cpu-cycles`).
///
/// PATTERN is `KIND:NAME` with shell wildcards in both parts. Uprobes and USDT probes need the
/// binary: `uprobe:/bin/bash:read*`, `usdt:/usr/lib/libc.so.6:*`, or for USDT probes a process
/// (`-p PID 'usdt:*'`). A pattern without a kind is
/// looked for among the kernel's attach points (every kind but the binaries' and the return
/// twins), and so is no pattern at all.
public struct AttachPointListing {
    /// With `verbose`, a tracepoint is followed by its record's fields (not the common ones),
    /// a USDT probe by its argument locations.
    public var verbose = false
    /// Notes for a person (a kind this kernel does not offer), written to stderr by the CLI.
    public var note: (String) -> Void = { _ in }
    /// `-p`: `usdt:PATTERN` lists the USDT probes of every file the process maps, as tplist -p.
    public var pid: Int32?

    public init(verbose: Bool = false, pid: Int32? = nil, note: @escaping (String) -> Void = { _ in }) {
        self.verbose = verbose
        self.pid = pid
        self.note = note
    }

    enum Kind: String, CaseIterable {
        case kprobe, kretprobe, tracepoint
        case rawTracepoint = "raw_tracepoint"
        case fentry, fexit, uprobe, uretprobe, usdt, software, hardware

        /// bpftrace's names and short forms, and libbpf's.
        static let aliases: [String: Kind] = [
            "k": .kprobe, "kr": .kretprobe, "t": .tracepoint, "tp": .tracepoint, "rawtracepoint": .rawTracepoint,
            "raw_tp": .rawTracepoint, "rt": .rawTracepoint, "f": .fentry, "kfunc": .fentry, "fr": .fexit,
            "kretfunc": .fexit, "u": .uprobe, "ur": .uretprobe, "U": .usdt, "s": .software, "h": .hardware,
        ]

        /// What a pattern without a kind, or a wildcard kind, searches.
        static let kernel: [Kind] = [.kprobe, .tracepoint, .rawTracepoint, .fentry, .software, .hardware]
    }

    /// Splits a pattern into the kinds it asks for and the pattern for names.
    static func parse(_ pattern: String?) throws(RuntimeError) -> (kinds: [Kind], name: String, explicit: Bool) {
        guard let pattern, !pattern.isEmpty else { return (Kind.kernel, "*", false) }
        guard let colon = pattern.firstIndex(of: ":") else { return (Kind.kernel, pattern, false) }
        let kindText = String(pattern[..<colon])
        var name = String(pattern[pattern.index(after: colon)...])
        if name.isEmpty { name = "*" }
        if let kind = Kind(rawValue: kindText) ?? Kind.aliases[kindText] { return ([kind], name, true) }
        let kinds = Kind.kernel.filter { Wildcard.matches(kindText, $0.rawValue) }
        guard Wildcard.isPattern(kindText), !kinds.isEmpty else {
            throw RuntimeError(.usage, "-l '\(pattern)': unknown kind '\(kindText)'; kinds: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return (kinds, name, false)
    }

    /// The matching attach points, one line each (with -v, field lines indented below).
    public func list(_ pattern: String?) throws(RuntimeError) -> [String] {
        let (kinds, name, explicit) = try AttachPointListing.parse(pattern)
        // Mounting tracefs where it was not mounted is worth a word only with -v.
        let tracefs = Tracefs(log: verbose ? note : { _ in })
        var lines: [String] = []
        for kind in kinds {
            do {
                lines += try list(kind, name, tracefs: tracefs)
            } catch {
                // Asked for by name, a kind this machine cannot list is the answer; found by a
                // wider search, it is a note beside the kinds that it can.
                if explicit { throw error }
                note("no \(kind.rawValue) attach points: \(error.message)")
            }
        }
        return lines
    }

    private func list(_ kind: Kind, _ name: String, tracefs: Tracefs) throws(RuntimeError) -> [String] {
        switch kind {
        case .kprobe, .kretprobe:
            guard try tracefs.kprobesSupported() else {
                throw RuntimeError(.attach, "kprobes are not supported by this kernel (no kprobe PMU and no kprobe_events)")
            }
            return try tracefs.kernelFunctions().filter { Wildcard.matches(name, $0) }.sorted().map { "\(kind.rawValue):\($0)" }
        case .tracepoint:
            // "sched_switch" finds the event in whatever category has it.
            let pattern = name.contains(":") ? name : "*:" + name
            var lines: [String] = []
            for event in try tracefs.tracepoints().sorted() where Wildcard.matches(pattern, event) {
                lines.append("tracepoint:" + event)
                if verbose { lines += try fields(event, tracefs: tracefs) }
            }
            return lines
        case .rawTracepoint:
            // The syscalls category is ftrace's per-call view of the raw_syscalls tracepoints
            // (sys_enter, sys_exit); its events have no raw tracepoint of their own.
            var seen = Set<String>()
            return try tracefs.tracepoints().sorted().compactMap { event in
                let parts = event.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, parts[0] != "syscalls", Wildcard.matches(name, parts[1]), seen.insert(parts[1]).inserted else { return nil }
                let eventName = parts[1]
                return "raw_tracepoint:" + eventName
            }
        case .fentry, .fexit:
            return try AttachPointListing.kernelBTFFunctions().filter { Wildcard.matches(name, $0) }.map { "\(kind.rawValue):\($0)" }
        case .usdt where pid != nil && !name.hasPrefix("/"):
            guard let files = USDTProbe.mappedFiles(of: pid!) else {
                throw RuntimeError(.usage, "-p \(pid!): cannot read /proc/\(pid!)/maps (no such process?)")
            }
            return files.flatMap { file in (try? usdtProbes(file.path, matching: name)) ?? [] }
        case .uprobe, .uretprobe, .usdt:
            guard let colon = name.firstIndex(of: ":"), colon != name.startIndex else {
                throw RuntimeError(.usage, "-l \(kind.rawValue):\(name): name the binary, e.g. -l '\(kind.rawValue):/bin/bash:*'")
            }
            let path = AttachPointListing.resolve(String(name[..<colon]))
            let probePattern = String(name[name.index(after: colon)...])
            if kind == .usdt { return try usdtProbes(path, matching: probePattern) }
            guard let symbols = ELFSymbols(path: path) else {
                throw RuntimeError(.usage, "cannot read the symbols of \(path): not a readable ELF file")
            }
            var seen = Set<String>()
            return symbols.table.symbols.map(\.name).sorted()
                .filter { Wildcard.matches(probePattern, $0) && seen.insert($0).inserted }
                .map { "\(kind.rawValue):\(path):\($0)" }
        case .software:
            return PerfEventName.software.filter { Wildcard.matches(name, $0.name) }.map { "software:" + $0.name }
        case .hardware:
            let counted = PerfEventName.hardware.filter(\.opens)
            guard !counted.isEmpty else {
                throw RuntimeError(.attach, "this machine counts no hardware perf events (no hardware PMU, as in most virtual machines)")
            }
            return counted.filter { Wildcard.matches(name, $0.name) }.map { "hardware:" + $0.name }
        }
    }

    private func usdtProbes(_ path: String, matching pattern: String) throws(RuntimeError) -> [String] {
        var lines: [String] = []
        var seen = Set<String>()
        for probe in try USDTProbe.probes(in: path) {
            let probeName = "\(probe.provider):\(probe.name)"
            guard Wildcard.matches(pattern, probeName) || Wildcard.matches(pattern, probe.name),
                  seen.insert(probeName).inserted else { continue }
            lines.append("usdt:\(path):\(probeName)")
            if verbose {
                lines.append("    arguments: " + (probe.arguments.isEmpty ? "none" : probe.arguments))
                if probe.hasSemaphore { lines.append("    guarded by a semaphore") }
            }
        }
        return lines
    }

    /// The record fields of a tracepoint, as declared in its format file (common_ fields left out).
    private func fields(_ event: String, tracefs: Tracefs) throws(RuntimeError) -> [String] {
        let parts = event.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return [] }
        let format = try tracefs.format(category: parts[0], event: parts[1])
        return TracepointFormat.fields(format: format)
            .filter { !$0.declaration.hasPrefix("common_") && !$0.declaration.contains(" common_") }
            .map { "    " + $0.declaration }
    }

    /// A binary named without a directory is looked for in $PATH, as a shell would.
    static func resolve(_ binary: String) -> String {
        guard !binary.contains("/") else { return binary }
        for directory in (Environment.get("PATH") ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(binary)"
            if FileSystem.isRegularFile(candidate) { return candidate }
        }
        return binary
    }

    /// The kernel's function names in its BTF (/sys/kernel/btf/vmlinux): what fentry/fexit name.
    static func kernelBTFFunctions() throws(RuntimeError) -> [String] {
        guard let btf = btf__load_vmlinux_btf() else {
            throw RuntimeError(.noKernelHeaders, "the kernel has no BTF (/sys/kernel/btf/vmlinux): \(Errno.current); fentry and fexit need it")
        }
        defer { btf__free(btf) }
        var names: [String] = []
        for id in 1..<btf__type_cnt(btf) {
            guard let type = btf__type_by_id(btf, id), btf_is_func(type),
                  let name = btf__name_by_offset(btf, type.pointee.name_off) else { continue }
            names.append(String(cString: name))
        }
        return names.sorted()
    }
}

/// The perf events `perf_event_open` knows by number, by the names perf and bpftrace give them.
struct PerfEventName {
    var name: String
    var type: UInt32
    var config: UInt64

    static let software: [PerfEventName] = [
        ("cpu-clock", PERF_COUNT_SW_CPU_CLOCK), ("task-clock", PERF_COUNT_SW_TASK_CLOCK),
        ("page-faults", PERF_COUNT_SW_PAGE_FAULTS), ("context-switches", PERF_COUNT_SW_CONTEXT_SWITCHES),
        ("cpu-migrations", PERF_COUNT_SW_CPU_MIGRATIONS), ("minor-faults", PERF_COUNT_SW_PAGE_FAULTS_MIN),
        ("major-faults", PERF_COUNT_SW_PAGE_FAULTS_MAJ), ("alignment-faults", PERF_COUNT_SW_ALIGNMENT_FAULTS),
        ("emulation-faults", PERF_COUNT_SW_EMULATION_FAULTS), ("dummy", PERF_COUNT_SW_DUMMY),
        ("bpf-output", PERF_COUNT_SW_BPF_OUTPUT),
    ].map { PerfEventName(name: $0.0, type: UInt32(PERF_TYPE_SOFTWARE.rawValue), config: UInt64($0.1.rawValue)) }

    static let hardware: [PerfEventName] = [
        ("cpu-cycles", PERF_COUNT_HW_CPU_CYCLES), ("instructions", PERF_COUNT_HW_INSTRUCTIONS),
        ("cache-references", PERF_COUNT_HW_CACHE_REFERENCES), ("cache-misses", PERF_COUNT_HW_CACHE_MISSES),
        ("branch-instructions", PERF_COUNT_HW_BRANCH_INSTRUCTIONS), ("branch-misses", PERF_COUNT_HW_BRANCH_MISSES),
        ("bus-cycles", PERF_COUNT_HW_BUS_CYCLES), ("frontend-stalls", PERF_COUNT_HW_STALLED_CYCLES_FRONTEND),
        ("backend-stalls", PERF_COUNT_HW_STALLED_CYCLES_BACKEND), ("ref-cycles", PERF_COUNT_HW_REF_CPU_CYCLES),
    ].map { PerfEventName(name: $0.0, type: UInt32(PERF_TYPE_HARDWARE.rawValue), config: UInt64($0.1.rawValue)) }

    /// Whether this machine counts the event: a virtual machine often has no hardware PMU, and
    /// a PMU counts only some of the generic events. Tried on this process, then closed.
    var opens: Bool {
        var attr = perf_event_attr()
        attr.type = type
        attr.size = UInt32(MemoryLayout<perf_event_attr>.size)
        attr.config = config
        attr.disabled = 1
        attr.exclude_kernel = 1
        let fd = kprobe_run_perf_event_open(&attr, 0, -1, -1, UInt(PERF_FLAG_FD_CLOEXEC))
        if fd >= 0 { close(fd) }
        return fd >= 0
    }
}
