import CLibBPF
import Glibc
import KprobeSupport

/// A libbpf object opened from memory, with its programs' attach points decided before load
/// (a program attached via --attach may need its type changed, which only works before load).
final class ProbeObject {
    struct Program {
        let program: BPFProgram
        let name: String
        let section: String
        /// Where to attach; several when --attach names the program more than once.
        var points: [AttachPoint]
        /// Calls bpf_trace_printk/bpf_trace_vprintk, so trace_pipe must be read.
        let usesPrintk: Bool
        /// Why the program is not loaded (see `ProgramSelection`); such a program has no points.
        var leftOut: String?
        var selected: Bool { leftOut == nil }
    }

    private let pointer: OpaquePointer
    let name: String
    private(set) var programs: [Program] = []
    /// Every map, in object order.
    let maps: [BPFMap]
    let btf: BTFHandle?
    /// What the BCC front end recorded (record types, histograms); empty for other objects.
    let metadata: ObjectMetadata
    /// libbpf reads the ELF image lazily, so the bytes live as long as the object.
    private let image: UnsafeMutableRawBufferPointer

    init(bytes: [UInt8], name: String) throws(RuntimeError) {
        LibbpfLog.shared.install()
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { image.copyMemory(from: $0) }
        self.image = image
        var opts = bpf_object_open_opts()
        LibbpfOptions.prepare(&opts, size: \.sz)
        let opened: OpaquePointer? = name.withCString { cName in
            opts.object_name = cName
            return bpf_object__open_mem(image.baseAddress, bytes.count, &opts)
        }
        guard let opened else {
            let err = Errno.current
            image.deallocate()
            let details = VerifierLog.warnings(in: LibbpfLog.shared.contents)
            throw RuntimeError(.internal, "cannot open BPF object '\(name)': \(err)" + ProbeObject.indented(details))
        }
        pointer = opened
        self.name = name
        metadata = ObjectMetadata.read(from: UnsafeRawBufferPointer(image)) ?? ObjectMetadata()
        btf = bpf_object__btf(opened).map(BTFHandle.init(pointer:))
        var program = bpf_object__next_program(opened, nil)
        while let current = program {
            let handle = BPFProgram(pointer: current)
            programs.append(Program(program: handle, name: handle.name, section: handle.section, points: [],
                                    usesPrintk: handle.callsPrintk))
            program = bpf_object__next_program(opened, current)
        }
        var maps: [BPFMap] = []
        var map = bpf_object__next_map(opened, nil)
        while let current = map {
            maps.append(BPFMap(pointer: current))
            map = bpf_object__next_map(opened, current)
        }
        self.maps = maps
    }

    deinit {
        bpf_object__close(pointer)
        image.deallocate()
    }

    /// The programs that load.
    var programNames: [String] { programs.filter(\.selected).map(\.name) }

    /// Everything decided before load: map sizes, `--set` parameters, which programs load
    /// (`ProgramSelection`) and where each attaches.
    func prepare(specs: [AttachSpec], options: LoadOptions, requireAttachable: Bool, log: (String) -> Void) throws(RuntimeError) {
        try sizeMaps(options.mapSizes, log: log)
        try setParameters(options.parameters, log: log)
        try plan(specs: specs, options: options, requireAttachable: requireAttachable, log: log)
    }

    /// Decides which programs load and every loaded program's attach points: from `specs` for
    /// the programs they name, from the SEC (or BCC-style) name for the rest. With
    /// `requireAttachable`, a tracing program that nothing tells where to attach is an error.
    func plan(specs: [AttachSpec], options: LoadOptions = LoadOptions(), requireAttachable: Bool,
              log: (String) -> Void = { _ in }) throws(RuntimeError) {
        for spec in specs where !programs.contains(where: { $0.name == spec.program }) {
            let names = programs.map(\.name)
            let known = names.isEmpty ? "it has none" : "it has: " + names.joined(separator: ", ")
            throw RuntimeError(.usage, "--attach \(spec): the object has no program named '\(spec.program)'; \(known)")
        }
        let dropped = try ProgramSelection.choose(programs: programs.map { ($0.name, $0.section) },
                                                  explicit: Set(specs.map(\.program)), options: options,
                                                  features: KernelFeatures.shared, verifying: !requireAttachable)
        var unattachable: [(name: String, section: String, reason: String)] = []
        for index in programs.indices {
            let program = programs[index]
            if let reason = dropped[program.name] {
                program.program.autoload = false
                programs[index].leftOut = reason
                log("not loading '\(program.name)' (SEC(\"\(program.section)\")): \(reason)")
                continue
            }
            let type = program.program.type
            let named = specs.filter { $0.program == program.name }
            if let first = named.first, let target = try retarget(program, to: first) {
                programs[index].points = [target]
                continue
            }
            let points = named.isEmpty
                ? [AttachPoint.classify(section: program.section, function: program.name, type: type)]
                : named.map(AttachPoint.init(spec:))
            if case let .needsSpec(reason) = points[0] {
                if requireAttachable {
                    unattachable.append((program.name, program.section, reason))
                } else if type == BPF_PROG_TYPE_UNSPEC {
                    throw RuntimeError(.rejected, "program '\(program.name)' in SEC(\"\(program.section)\"): libbpf cannot tell its program type from that section name; use a libbpf section name such as kprobe/SYMBOL or tracepoint/CATEGORY/EVENT")
                }
            }
            if let wanted = points[0].programType, wanted != type {
                if bpf_program__set_type(program.program.pointer, wanted) != 0 {
                    throw RuntimeError(.internal, "cannot set the program type of '\(program.name)' for \(points[0].summary)")
                }
            }
            programs[index].points = points
        }
        if !dropped.isEmpty, programs.contains(where: \.selected) {
            log("loading " + programs.filter(\.selected).map { "'\($0.name)' (SEC(\"\($0.section)\"))" }.joined(separator: ", "))
        }
        if let first = unattachable.first {
            let list = unattachable.map { "'\($0.name)' (\($0.reason))" }.joined(separator: ", ")
            throw RuntimeError(.attach, "no attach point for program \(list); name one with --attach, e.g. --attach \(AttachPoint.attachExample(section: first.section, program: first.name, readsUSDT: maps.contains { $0.name == "__bpf_usdt_specs" })) (forms: \(AttachSpec.acceptedForms.joined(separator: ", ")))")
        }
        // Programs of types kprobe-run does not attach (socket filters, XDP, …) and programs left
        // out are no error beside others that run, but an object where nothing runs at all would
        // only print its maps.
        if requireAttachable, programs.filter(\.selected).allSatisfy({ $0.points == [.notAttached] }) {
            let list = programs.map { "'\($0.name)' (" + ($0.leftOut ?? "SEC(\"\($0.section)\")") + ")" }.joined(separator: ", ")
            let example = programs.first.map { "--attach kprobe:SYMBOL=\($0.name)" } ?? "--attach kprobe:SYMBOL=FUNC"
            throw RuntimeError(.attach, (programs.isEmpty ? "'\(name)' has no programs" : "nothing in '\(name)' says where to attach program \(list)")
                + ": nothing to run; name an attach point with --attach, e.g. \(example) (forms: \(AttachSpec.acceptedForms.joined(separator: ", ")))")
        }
    }

    /// An fentry/fexit program named by `-a kprobe:FUNC=PROG` keeps its type (its code reads
    /// fentry arguments) and gets FUNC as its BTF attach target, as libbpf-tools' userspace does
    /// for `fentry/dummy_*` placeholders; nil for every other program.
    private func retarget(_ program: Program, to spec: AttachSpec) throws(RuntimeError) -> AttachPoint? {
        guard ["fentry/", "fexit/", "fmod_ret/"].contains(where: { program.section.hasPrefix($0) }),
              case let .kprobe(symbol, _, _) = AttachPoint(spec: spec) else { return nil }
        let result = bpf_program__set_attach_target(program.program.pointer, 0, symbol)
        guard result == 0 else {
            throw RuntimeError(.attach, "cannot attach program '\(program.name)' (SEC(\"\(program.section)\")) to '\(symbol)': \(Errno(-result))")
        }
        return .libbpf(section: program.section)
    }

    static let pidVariable = "kprobe_run_pid"

    /// Writes `pid` into the probe's `const volatile int kprobe_run_pid` (in .rodata), before
    /// load; returns false when the object declares no such variable.
    @discardableResult
    func setTargetPID(_ pid: Int32) -> Bool {
        guard let parameter = parameters.first(where: { $0.name == ProbeObject.pidVariable && $0.size == 4 }) else { return false }
        return (try? write(withUnsafeBytes(of: pid) { Array($0) }, to: parameter)) ?? false
    }

    /// After a failed `load`, the program libbpf names in its log, if any.
    private(set) var failedProgram: String?

    /// Loads every selected program into the kernel (this is where the verifier runs).
    func load() throws(RuntimeError) {
        LibbpfLog.shared.clear()
        let result = bpf_object__load(pointer)
        guard result != 0 else { return }
        failedProgram = ProbeObject.failedProgram(in: VerifierLog.warnings(in: LibbpfLog.shared.contents))
        let sections = Dictionary(programs.map { ($0.name, $0.section) }, uniquingKeysWith: { first, _ in first })
        throw ProbeObject.loadError(code: -result, log: LibbpfLog.shared.contents, object: name,
                                    sections: sections, privileged: Privileges.canUseBPF)
    }

    static func loadError(code: Int32, log: String, object: String, sections: [String: String] = [:],
                          privileged: Bool = false) -> RuntimeError {
        let err = Errno(code)
        let tail = VerifierLog.tail(of: log)
        let warnings = VerifierLog.warnings(in: log)
        let program = failedProgram(in: warnings)
        let subject = program.map { "program '\($0)'" } ?? "object '\(object)'"
        if code == EPERM || (code == EACCES && tail == nil) {
            guard privileged else {
                return RuntimeError(.notPermitted, "the kernel refused to load \(subject): \(err)\n" + permissionAdvice)
            }
            if let section = program.flatMap({ sections[$0] }),
               ["fentry", "fexit", "fmod_ret", "lsm"].contains(where: { section.hasPrefix($0) }) {
                return RuntimeError(.attach, "cannot load \(subject) (SEC(\"\(section)\")): the kernel refused it (\(err)) although kprobe-run has CAP_BPF and CAP_PERFMON; this kernel probably cannot attach BPF trampolines to kernel functions (that needs ftrace with direct calls); use a tracepoint, raw tracepoint or tp_btf probe instead")
            }
            return RuntimeError(.notPermitted, "the kernel refused to load \(subject): \(err), although kprobe-run has CAP_BPF and CAP_PERFMON; a security policy (SELinux, lockdown, seccomp) may forbid it" + (AndroidSystem.permissionAdvice.map { "; " + $0 } ?? "") + indented(warnings))
        }
        if let missing = warnings.first(where: { $0.contains("failed to find kernel BTF type ID") }) {
            return RuntimeError(.attach, "cannot attach \(subject): no such kernel function for fentry/fexit (\(missing.dropFirst("libbpf: ".count)))")
        }
        if let tail {
            return RuntimeError(.rejected, "the kernel verifier rejected \(subject) (\(err)); end of the verifier log:" + indented(tail))
        }
        return RuntimeError(.rejected, "the kernel rejected \(subject): \(err)" + indented(warnings))
    }

    static var permissionAdvice: String {
        var text = "loading and attaching BPF programs needs root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8); run kprobe-run with sudo"
        if let selinux = AndroidSystem.permissionAdvice { text += "; " + selinux }
        return text
    }

    /// libbpf reports "prog 'NAME': failed to load: -13"; the name is the program that failed.
    private static func failedProgram(in warnings: [String]) -> String? {
        for line in warnings.reversed() {
            guard let start = line.firstRange(of: "prog '") else { continue }
            let rest = line[start.upperBound...]
            if let end = rest.firstIndex(of: "'") { return String(rest[..<end]) }
        }
        return nil
    }

    static func indented(_ lines: [String]) -> String {
        lines.isEmpty ? "" : "\n" + lines.map { "  " + $0 }.joined(separator: "\n")
    }
}
