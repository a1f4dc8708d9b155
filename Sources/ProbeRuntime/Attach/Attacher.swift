import CLibBPF
import Glibc
import KprobeSupport

/// Turns attach points into libbpf links and owns them: `detachAll` (also run on deinit) destroys
/// every link, which closes perf events and removes any kprobe/uprobe events libbpf created.
final class Attacher {
    private let tracefs: Tracefs
    private let log: (String) -> Void
    private var links: [BPFLink] = []
    private var kprobeSupport: Bool?
    /// `-p`/`-c`: uprobes and USDT probes fire only in this process (-1: in every process).
    private let uprobePID: Int32

    init(tracefs: Tracefs, uprobePID: Int32? = nil, log: @escaping (String) -> Void) {
        self.tracefs = tracefs
        self.uprobePID = uprobePID ?? -1
        self.log = log
    }

    deinit { detachAll() }

    func detachAll() {
        let attached = links
        links.removeAll()
        BPFLink.destroy(attached.reversed())
    }

    func attach(_ program: ProbeObject.Program, at point: AttachPoint) throws(RuntimeError) {
        LibbpfLog.shared.clear()
        let bpf = program.program
        let what = "\(point.summary) (program '\(program.name)')"
        switch point {
        case let .kprobe(symbol, offset, isReturn):
            try requireKprobes(what)
            if Wildcard.isPattern(symbol) {
                let kind = isReturn ? "kretprobe" : "kprobe"
                let symbols = try Wildcard.expand(symbol, in: try tracefs.kernelFunctions(),
                                                  noun: "kernel function", source: "available_filter_functions", listing: "\(kind):*")
                return try attachEach(symbols, what) { symbol throws(RuntimeError) in
                    try attachKprobe(bpf, symbol: symbol, offset: offset, isReturn: isReturn, "\(kind):\(symbol) (program '\(program.name)')")
                }
            }
            try attachKprobe(bpf, symbol: symbol, offset: offset, isReturn: isReturn, what)
        case let .tracepoint(category, event):
            if Wildcard.isPattern(category) || Wildcard.isPattern(event) {
                let names = try Wildcard.expand("\(category):\(event)", in: try tracefs.tracepoints(),
                                                noun: "tracepoint", source: "available_events",
                                                listing: Wildcard.isPattern(category) ? "tracepoint:*" : "tracepoint:\(category):*")
                return try attachEach(names, what) { name throws(RuntimeError) in
                    let parts = name.split(separator: ":", maxSplits: 1).map(String.init)
                    try attachTracepoint(bpf, category: parts[0], event: parts[1], "tracepoint:\(name) (program '\(program.name)')")
                }
            }
            try attachTracepoint(bpf, category: category, event: event, what)
        case let .rawTracepoint(name):
            try keep(bpf_program__attach_raw_tracepoint(bpf.pointer, name), what) { err in
                err.rawValue == ENOENT ? "no such raw tracepoint '\(name)' (use the event name, e.g. sched_switch)" : nil
            }
        case let .uprobe(path, symbol, isReturn):
            try attachUprobe(bpf, path: path, symbol: symbol, isReturn: isReturn, what)
        case let .usdt(path, provider, name):
            try attachUSDT(bpf, path: path.isEmpty ? try usdtBinary(provider: provider, name: name, what) : path,
                           provider: provider, name: name, what)
        case .perfEvent:
            try attachPerfEvent(bpf, what)
        case .libbpf:
            if bpf.type == BPF_PROG_TYPE_KPROBE, !program.section.hasPrefix("u") {
                try requireKprobes(what)
            }
            try keep(bpf_program__attach(bpf.pointer), what) { _ in nil }
        case let .needsSpec(reason):
            throw RuntimeError(.attach, "cannot attach program '\(program.name)': \(reason); name an attach point with --attach")
        case .notAttached:
            return
        }
        log("attached \(what)")
    }

    private func attachUprobe(_ program: BPFProgram, path: String, symbol: String, isReturn: Bool, _ what: String) throws(RuntimeError) {
        if path.contains("/"), !FileSystem.exists(path) {
            throw RuntimeError(.attach, "cannot attach \(what): uprobe binary \(path) not found")
        }
        var opts = bpf_uprobe_opts()
        LibbpfOptions.prepare(&opts, size: \.sz)
        opts.retprobe = isReturn
        let link: OpaquePointer? = symbol.withCString { cSymbol in
            opts.func_name = cSymbol
            return bpf_program__attach_uprobe_opts(program.pointer, uprobePID, path, 0, &opts)
        }
        try keep(link, what) { err in
            if err.rawValue == ESRCH, uprobePID >= 0, kill(uprobePID, 0) != 0 { return "process \(uprobePID) (-p) has exited" }
            return err.rawValue == ENOENT ? "binary '\(path)' or its symbol '\(symbol)' not found (check the path and 'nm -D \(path)')" : nil
        }
    }

    /// With a pid, libbpf attaches in that process only; either way the kernel raises the probe's
    /// semaphore (uprobe reference counter) in every process it attaches in.
    private func attachUSDT(_ program: BPFProgram, path: String, provider: String, name: String, _ what: String) throws(RuntimeError) {
        if path.contains("/"), !FileSystem.exists(path) {
            throw RuntimeError(.attach, "cannot attach \(what): binary \(path) not found")
        }
        var opts = bpf_usdt_opts()
        LibbpfOptions.prepare(&opts, size: \.sz)
        try keep(bpf_program__attach_usdt(program.pointer, uprobePID, path, provider, name, &opts), what) { err in
            if LibbpfLog.shared.contents.contains("USDT support BPF maps") {
                return "the program does not use libbpf's USDT support: include <bpf/usdt.bpf.h> and read the arguments with bpf_usdt_arg() or BPF_USDT() (in BCC programs, bpf_usdt_readarg())"
            }
            if err.rawValue == ESRCH, uprobePID >= 0, kill(uprobePID, 0) != 0 { return "process \(uprobePID) (-p) has exited" }
            if err.rawValue == ENOENT {
                return "\(path) has no USDT probe \(provider):\(name) (list its probes with kprobe-run -l 'usdt:\(path):*')"
            }
            return nil
        }
    }

    /// The file mapped by the `-p` process that has USDT probe PROVIDER:NAME: the executable or
    /// one of its libraries.
    private func usdtBinary(provider: String, name: String, _ what: String) throws(RuntimeError) -> String {
        guard uprobePID >= 0 else {
            throw RuntimeError(.usage, "cannot attach \(what): name the binary (usdt:PATH:\(provider):\(name)=FUNC), or a process with -p to look for it in")
        }
        guard let files = USDTProbe.mappedFiles(of: uprobePID) else {
            throw RuntimeError(.attach, "cannot attach \(what): cannot read /proc/\(uprobePID)/maps to find the binary with that probe")
        }
        for file in files {
            if let probes = try? USDTProbe.probes(in: file.path), probes.contains(where: { $0.provider == provider && $0.name == name }) {
                log("usdt \(provider):\(name) is in \(file.shown) (mapped by pid \(uprobePID))")
                return file.path
            }
        }
        throw RuntimeError(.attach, "cannot attach \(what): no file mapped by pid \(uprobePID) has USDT probe \(provider):\(name) (list a binary's probes with kprobe-run -l 'usdt:PATH:*')")
    }

    private func attachKprobe(_ program: BPFProgram, symbol: String, offset: Int, isReturn: Bool, _ what: String) throws(RuntimeError) {
        var opts = bpf_kprobe_opts()
        LibbpfOptions.prepare(&opts, size: \.sz)
        opts.offset = offset
        opts.retprobe = isReturn
        try keep(bpf_program__attach_kprobe_opts(program.pointer, symbol, &opts), what) { err in
            if err.rawValue == ENOENT || err.rawValue == EINVAL, !Attacher.kernelSymbolExists(symbol) {
                return "kernel symbol '\(symbol)' not found in /proc/kallsyms"
            }
            return nil
        }
    }

    private func attachTracepoint(_ program: BPFProgram, category: String, event: String, _ what: String) throws(RuntimeError) {
        guard try tracefs.hasTracepoint(category: category, event: event) else {
            throw RuntimeError(.attach, "cannot attach \(what): no such tracepoint \(category):\(event) (no \(try tracefs.path())/events/\(category)/\(event); list them with kprobe-run -l 'tracepoint:\(category):*')")
        }
        try keep(bpf_program__attach_tracepoint(program.pointer, category, event), what) { _ in nil }
    }

    /// Attaches at every match of a wildcard. A match that cannot take a probe (a function
    /// ftrace lists but kprobes refuse) is skipped, as bpftrace and funccount do; the first such
    /// failure is the error when no match attaches, and a refusal of the caller ends it at once.
    private func attachEach(_ names: [String], _ what: String, _ attachOne: (String) throws(RuntimeError) -> Void) throws(RuntimeError) {
        var skipped: [RuntimeError] = []
        for name in names {
            do {
                try attachOne(name)
            } catch where error.kind == .attach {
                skipped.append(error)
            }
        }
        if skipped.count == names.count, let first = skipped.first { throw first }
        log("attached \(what) at \(names.count - skipped.count) of \(names.count) match(es)")
        for error in skipped { log("skipped: \(error.message)") }
    }

    private func keep(_ link: OpaquePointer?, _ what: String, explain: (Errno) -> String?) throws(RuntimeError) {
        if let link {
            links.append(BPFLink(pointer: link))
            return
        }
        let err = Errno.current
        if err.isPermission {
            throw RuntimeError(.notPermitted, "cannot attach \(what): \(err); " + ProbeObject.permissionAdvice)
        }
        let reason = explain(err) ?? err.description
        let details = VerifierLog.warnings(in: LibbpfLog.shared.contents, limit: 2)
        throw RuntimeError(.attach, "cannot attach \(what): \(reason)" + ProbeObject.indented(details))
    }

    private func requireKprobes(_ what: String) throws(RuntimeError) {
        if kprobeSupport == nil { kprobeSupport = try tracefs.kprobesSupported() }
        guard kprobeSupport == true else {
            throw RuntimeError(.attach, "cannot attach \(what): kprobes are not supported by this kernel (no kprobe PMU in /sys/bus/event_source/devices and no kprobe_events in tracefs: it was built without CONFIG_KPROBES/CONFIG_KPROBE_EVENTS); use a tracepoint (SEC(\"tracepoint/CATEGORY/EVENT\")), raw tracepoint or tp_btf probe instead")
        }
    }

    /// One CPU-clock sampling event at 99 Hz per online CPU; each link owns (and closes) its
    /// perf event fd.
    private func attachPerfEvent(_ program: BPFProgram, _ what: String) throws(RuntimeError) {
        let cpus = Attacher.onlineCPUs()
        for cpu in cpus {
            var attr = perf_event_attr()
            attr.type = UInt32(PERF_TYPE_SOFTWARE.rawValue)
            attr.size = UInt32(MemoryLayout<perf_event_attr>.size)
            attr.config = UInt64(PERF_COUNT_SW_CPU_CLOCK.rawValue)
            attr.sample_freq = 99
            attr.freq = 1
            let fd = kprobe_run_perf_event_open(&attr, -1, Int32(cpu), -1, UInt(PERF_FLAG_FD_CLOEXEC))
            if fd < 0 {
                let err = Errno.current
                if err.rawValue == ENODEV { continue }
                if err.isPermission {
                    throw RuntimeError(.notPermitted, "cannot open a perf event on CPU \(cpu) for \(what): \(err); " + ProbeObject.permissionAdvice)
                }
                throw RuntimeError(.attach, "cannot open a cpu-clock perf event on CPU \(cpu) for \(what): \(err)")
            }
            guard let link = bpf_program__attach_perf_event(program.pointer, fd) else {
                let err = Errno.current
                close(fd)
                throw RuntimeError(err.isPermission ? .notPermitted : .attach, "cannot attach \(what) to the perf event on CPU \(cpu): \(err)")
            }
            links.append(BPFLink(pointer: link))
        }
        log("perf_event: sampling cpu-clock at 99 Hz on CPUs \(cpus.map(String.init).joined(separator: ","))")
    }

    /// /sys/devices/system/cpu/online, e.g. "0-3,6".
    static func onlineCPUs(_ text: String? = nil) -> [Int] {
        let list = text ?? (try? FileSystem.readString("/sys/devices/system/cpu/online")) ?? "0"
        var cpus: [Int] = []
        for range in list.trimmingSpaces.split(separator: ",") {
            let bounds = range.split(separator: "-").compactMap { Int($0.trimmingSpaces) }
            if bounds.count == 1 { cpus.append(bounds[0]) }
            if bounds.count == 2, bounds[0] <= bounds[1] { cpus.append(contentsOf: bounds[0]...bounds[1]) }
        }
        return cpus.isEmpty ? [0] : cpus
    }

    static func kernelSymbolExists(_ symbol: String) -> Bool { Kallsyms.contains(symbol) }
}
