import CLibBPF
import Glibc
import KprobeSupport

/// Which programs of an object load, decided before load as a libbpf-tools tool's userspace does
/// with `bpf_program__set_autoload`: of twins that trace the same thing (fentry/kprobe,
/// fexit/kretprobe on one function; tp_btf/raw_tp/tracepoint on one event) only the best variant
/// this kernel supports; programs on a placeholder target (`fentry/dummy_file_read`) only when
/// `-a` gives them a real one; `--only`/`--skip` over all of that.
struct ProgramSelection {
    /// A program's place among its twins: the group it belongs to and its rank (lower is better).
    struct Twin: Equatable {
        var group: String
        var rank: Int
        var flavor: String
        /// fentry/fexit need BPF trampolines, tp_btf needs kernel BTF.
        var needs: Requirement?
    }

    enum Requirement {
        case trampolines, kernelBTF
    }

    static func twin(section: String) -> Twin? {
        guard let slash = section.firstIndex(of: "/") else { return nil }
        let prefix = String(section[..<slash]), target = String(section[section.index(after: slash)...])
        guard !target.isEmpty else { return nil }
        switch prefix {
        case "fentry": return Twin(group: "entry of \(target)", rank: 0, flavor: prefix, needs: .trampolines)
        case "kprobe": return Twin(group: "entry of \(target)", rank: 1, flavor: prefix)
        case "fexit": return Twin(group: "return of \(target)", rank: 0, flavor: prefix, needs: .trampolines)
        case "kretprobe": return Twin(group: "return of \(target)", rank: 1, flavor: prefix)
        case "tp_btf": return Twin(group: "event \(target)", rank: 0, flavor: prefix, needs: .kernelBTF)
        case "raw_tp", "raw_tracepoint": return Twin(group: "event \(target)", rank: 1, flavor: prefix)
        case "tp", "tracepoint":
            guard let event = target.split(separator: "/").last, target.contains("/") else { return nil }
            return Twin(group: "event \(event)", rank: 2, flavor: prefix)
        default: return nil
        }
    }

    /// The function a kprobe/fentry-style section names when it is a stand-in that userspace
    /// replaces (libbpf-tools' `dummy_*`), or an fentry target the kernel does not have.
    static func placeholder(section: String, features: some KernelSupport) -> String? {
        guard let slash = section.firstIndex(of: "/") else { return nil }
        let prefix = section[..<slash], target = String(section[section.index(after: slash)...])
        guard ["fentry", "fexit", "fmod_ret", "kprobe", "kretprobe"].contains(prefix), !target.isEmpty else { return nil }
        if target.hasPrefix("dummy_") { return target }
        if prefix.hasPrefix("f"), let exists = features.kernelFunctionExists(target), !exists { return target }
        return nil
    }

    /// For each program: loaded or not, and why not (for -v).
    /// `verifying`: for `compile --verify`, which attaches nothing: a kprobe on a placeholder
    /// loads (its target matters only at attach) and is checked; an fentry one cannot load
    /// without a real target.
    static func choose(programs: [(name: String, section: String)], explicit: Set<String>, options: LoadOptions,
                       features: some KernelSupport, verifying: Bool = false) throws(RuntimeError) -> [String: String] {
        let names = programs.map(\.name)
        for name in options.only + options.skip where !names.contains(name) {
            let flag = options.only.contains(name) ? "--only" : "--skip"
            throw RuntimeError(.usage, "\(flag) \(name): the object has no program named '\(name)'; it has: \(names.joined(separator: ", "))")
        }
        var dropped: [String: String] = [:]
        var groups: [String: [(name: String, twin: Twin)]] = [:]
        for program in programs where !explicit.contains(program.name) {
            if options.skip.contains(program.name) {
                dropped[program.name] = "--skip"
            } else if !options.only.isEmpty {
                if !options.only.contains(program.name) { dropped[program.name] = "not named by --only" }
            } else if let target = placeholder(section: program.section, features: features),
                      !(verifying && program.section.hasPrefix("k")) {
                dropped[program.name] = "SEC(\"\(program.section)\") names '\(target)', which is no function of this kernel (a placeholder, or renamed or inlined here): give it a target with -a"
            } else if let twin = twin(section: program.section) {
                groups[twin.group, default: []].append((program.name, twin))
            }
        }
        for (group, members) in groups where Set(members.map(\.twin.rank)).count > 1 {
            let usable = members.filter { member in
                switch member.twin.needs {
                case .trampolines?: return features.trampolines
                case .kernelBTF?: return features.kernelBTF
                case nil: return true
                }
            }
            let best = (usable.isEmpty ? members : usable).map(\.twin.rank).min()!
            let chosen = members.filter { $0.twin.rank == best }
            let reason = chosen.map { "'\($0.name)' (\($0.twin.flavor))" }.joined(separator: ", ")
            for member in members where member.twin.rank != best {
                let why = member.twin.needs == .trampolines && !features.trampolines ? "this kernel cannot attach BPF trampolines; "
                    : member.twin.needs == .kernelBTF && !features.kernelBTF ? "this kernel has no BTF; " : ""
                dropped[member.name] = "\(why)its twin \(reason) traces the \(group)"
            }
        }
        // What is left that this kernel cannot load at all, as a libbpf-tools tool's userspace
        // turns off fentry programs where trampolines are missing (biosnoop keeps its tp_btf
        // program instead, klockstat its kprobes): left out, said with -v; an object with nothing
        // else to attach then fails as such.
        for members in groups.values {
            for member in members where dropped[member.name] == nil {
                if member.twin.needs == .trampolines && !features.trampolines {
                    dropped[member.name] = "this kernel cannot attach BPF trampolines (\(member.twin.flavor)), and no twin of it traces the \(member.twin.group)"
                } else if member.twin.needs == .kernelBTF && !features.kernelBTF {
                    dropped[member.name] = "this kernel has no BTF (\(member.twin.flavor)), and no twin of it traces the \(member.twin.group)"
                }
            }
        }
        return dropped
    }
}

/// What the kernel supports, as far as the choice of programs depends on it.
protocol KernelSupport {
    /// fentry/fexit programs load and attach.
    var trampolines: Bool { get }
    var kernelBTF: Bool { get }
    /// nil when it cannot be told (no kernel BTF).
    func kernelFunctionExists(_ name: String) -> Bool?
}

/// The running kernel, probed once per process when a choice depends on it.
final class KernelFeatures: KernelSupport, @unchecked Sendable {
    static let shared = KernelFeatures()

    private var lock = pthread_mutex_t()
    private var vmlinux: BTFHandle??
    private var trampolineResult: Bool?

    private init() { pthread_mutex_init(&lock, nil) }

    /// BTF_KIND_FUNC (linux/btf.h), whose name is imported twice from libbpf's headers.
    static let functionKind: UInt32 = 12

    var kernelBTF: Bool { access("/sys/kernel/btf/vmlinux", R_OK) == 0 }

    /// nil when there is no kernel BTF to ask.
    func kernelFunctionExists(_ name: String) -> Bool? {
        guard let btf = kernelTypes() else { return nil }
        return btf__find_by_name_kind(btf.pointer, name, KernelFeatures.functionKind) > 0
    }

    /// Whether an fentry program loads and attaches: an empty one on a function every kernel
    /// with BPF has (EPERM where ftrace has no direct calls, e.g. this project's test host).
    var trampolines: Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let trampolineResult { return trampolineResult }
        let result = probeTrampolines()
        trampolineResult = result
        return result
    }

    private func kernelTypes() -> BTFHandle? {
        if let vmlinux { return vmlinux }
        let loaded = kernelBTF ? btf__load_vmlinux_btf().map(BTFHandle.init(pointer:)) : nil
        vmlinux = .some(loaded)
        return loaded
    }

    private func probeTrampolines() -> Bool {
        guard let btf = kernelTypes()?.pointer else { return false }
        let function = btf__find_by_name_kind(btf, "bpf_fentry_test1", KernelFeatures.functionKind) > 0 ? "bpf_fentry_test1" : "bpf_prog_put"
        let id = btf__find_by_name_kind(btf, function, KernelFeatures.functionKind)
        guard id > 0 else { return false }
        // r0 = 0; exit
        var instructions = [bpf_insn](repeating: bpf_insn(), count: 2)
        instructions[0].code = 0xb7
        instructions[1].code = 0x95
        var opts = bpf_prog_load_opts()
        LibbpfOptions.prepare(&opts, size: \.sz)
        opts.expected_attach_type = BPF_TRACE_FENTRY
        opts.attach_btf_id = UInt32(id)
        let program = bpf_prog_load(BPF_PROG_TYPE_TRACING, "kprobe_run_probe", "GPL", instructions, 2, &opts)
        guard program >= 0 else { return false }
        defer { close(program) }
        let link = bpf_link_create(program, 0, BPF_TRACE_FENTRY, nil)
        guard link >= 0 else { return false }
        close(link)
        return true
    }
}
