import CLibBPF
import Glibc
import KprobeSupport

/// A libbpf object opened from memory, with its programs' attach points decided before load
/// (a program attached via --attach may need its type changed, which only works before load).
final class ProbeObject {
    struct Program {
        let handle: OpaquePointer
        let name: String
        let section: String
        /// Where to attach; several when --attach names the program more than once.
        var points: [AttachPoint]
        /// Calls bpf_trace_printk/bpf_trace_vprintk, so trace_pipe must be read.
        let usesPrintk: Bool
    }

    let handle: OpaquePointer
    let name: String
    private(set) var programs: [Program] = []
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
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
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
        handle = opened
        self.name = name
        metadata = ObjectMetadata.read(from: UnsafeRawBufferPointer(image)) ?? ObjectMetadata()
        var program = bpf_object__next_program(handle, nil)
        while let current = program {
            let programName = String(cString: bpf_program__name(current))
            let section = String(cString: bpf_program__section_name(current))
            programs.append(Program(handle: current, name: programName, section: section, points: [],
                                    usesPrintk: ProbeObject.callsPrintk(current)))
            program = bpf_object__next_program(handle, current)
        }
    }

    deinit {
        bpf_object__close(handle)
        image.deallocate()
    }

    var programNames: [String] { programs.map(\.name) }

    /// Decides every program's attach points: from `specs` for the programs they name, from the
    /// SEC (or BCC-style) name for the rest. With `requireAttachable`, a tracing program that
    /// nothing tells where to attach is an error.
    func plan(specs: [AttachSpec], requireAttachable: Bool) throws(RuntimeError) {
        for spec in specs where !programs.contains(where: { $0.name == spec.program }) {
            let known = programs.isEmpty ? "it has none" : "it has: " + programNames.joined(separator: ", ")
            throw RuntimeError(.usage, "--attach \(spec): the object has no program named '\(spec.program)'; \(known)")
        }
        var unattachable: [(name: String, section: String, reason: String)] = []
        for index in programs.indices {
            let program = programs[index]
            let type = bpf_program__type(program.handle)
            let named = specs.filter { $0.program == program.name }
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
                if bpf_program__set_type(program.handle, wanted) != 0 {
                    throw RuntimeError(.internal, "cannot set the program type of '\(program.name)' for \(points[0].summary)")
                }
            }
            programs[index].points = points
        }
        if let first = unattachable.first {
            let list = unattachable.map { "'\($0.name)' (\($0.reason))" }.joined(separator: ", ")
            throw RuntimeError(.attach, "no attach point for program \(list); name one with --attach, e.g. --attach \(AttachPoint.attachExample(section: first.section, program: first.name)) (forms: \(AttachSpec.acceptedForms.joined(separator: ", ")))")
        }
        // Programs of types kprobe-run does not attach (socket filters, XDP, …) are no error beside
        // others that run, but an object where nothing runs at all would only print its maps.
        if requireAttachable, programs.allSatisfy({ $0.points == [.notAttached] }) {
            let list = programs.map { "'\($0.name)' (SEC(\"\($0.section)\"))" }.joined(separator: ", ")
            let example = programs.first.map { "--attach kprobe:SYMBOL=\($0.name)" } ?? "--attach kprobe:SYMBOL=FUNC"
            throw RuntimeError(.attach, (programs.isEmpty ? "'\(name)' has no programs" : "nothing in '\(name)' says where to attach program \(list)")
                + ": nothing to run; name an attach point with --attach, e.g. \(example) (forms: \(AttachSpec.acceptedForms.joined(separator: ", ")))")
        }
    }

    static let pidVariable = "kprobe_run_pid"

    /// Writes `pid` into the probe's `const volatile int kprobe_run_pid` (in .rodata), before
    /// load; returns false when the object declares no such variable.
    @discardableResult
    func setTargetPID(_ pid: Int32) -> Bool {
        guard let btf = bpf_object__btf(handle) else { return false }
        var map = bpf_object__next_map(handle, nil)
        while let current = map {
            map = bpf_object__next_map(handle, current)
            let mapName = String(cString: bpf_map__name(current))
            guard bpf_map__is_internal(current), mapName.hasSuffix(".rodata"),
                  let section = btf__type_by_id(btf, bpf_map__btf_value_type_id(current)), btf_is_datasec(section),
                  let variables = btf_var_secinfos(section) else { continue }
            for index in 0..<Int(btf_vlen(section)) {
                let info = variables[index]
                guard let variable = btf__type_by_id(btf, info.type), btf_is_var(variable),
                      let cName = btf__name_by_offset(btf, variable.pointee.name_off),
                      String(cString: cName) == ProbeObject.pidVariable, info.size == 4 else { continue }
                var size = 0
                guard let data = bpf_map__initial_value(current, &size), Int(info.offset) + 4 <= size else { return false }
                var contents = Array(UnsafeRawBufferPointer(start: data, count: size))
                withUnsafeBytes(of: pid) { contents.replaceSubrange(Int(info.offset)..<Int(info.offset) + 4, with: $0) }
                return bpf_map__set_initial_value(current, contents, size) == 0
            }
        }
        return false
    }

    /// Loads every program into the kernel (this is where the verifier runs).
    func load() throws(RuntimeError) {
        LibbpfLog.shared.clear()
        let result = bpf_object__load(handle)
        guard result != 0 else { return }
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

    /// BPF_JMP|BPF_CALL with src_reg 0 calls a helper; 6 is bpf_trace_printk, 177 bpf_trace_vprintk.
    private static func callsPrintk(_ program: OpaquePointer) -> Bool {
        guard let instructions = bpf_program__insns(program) else { return false }
        let count = Int(bpf_program__insn_cnt(program))
        for index in 0..<count {
            let instruction = instructions[index]
            if instruction.code == 0x85, instruction.src_reg == 0, instruction.imm == 6 || instruction.imm == 177 {
                return true
            }
        }
        return false
    }
}
