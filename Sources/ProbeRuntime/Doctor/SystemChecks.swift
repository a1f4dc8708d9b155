import CLibBPF
import Glibc
import KprobeSupport

/// `kprobe-run doctor`'s view of what this kernel and this process can do with BPF: each check
/// asks the kernel (a map or program loaded and dropped at once) or reads the file it keeps the
/// setting in, without changing anything (tracefs is not mounted here, only looked for).
public enum SystemChecks {
    public static func run() -> [DoctorCheck] {
        let tracefs = [Tracefs.standardPath, Tracefs.debugfsPath].first { FileSystem.exists($0 + "/trace_pipe") }
        return [
            bpfSyscall(), btf(), kprobes(tracefs: tracefs), uprobes(tracefs: tracefs), tracepoints(tracefs: tracefs),
            trampolines(), ringBuffer(), selinux(), unprivilegedBPF(), lockdown(),
        ]
    }

    static func bpfSyscall() -> DoctorCheck {
        let who = geteuid() == 0 ? "root" : "uid \(geteuid())"
        let privileges = Privileges.canUseBPF ? "\(who) with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)" : "\(who) without CAP_BPF/CAP_PERFMON"
        let fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "kr_doctor", 4, 4, 1, nil)
        if fd >= 0 {
            close(fd)
            return DoctorCheck("bpf", .ok, "bpf() works: \(privileges)")
        }
        let error = Errno(-fd)
        if error.rawValue == ENOSYS {
            return DoctorCheck("bpf", .missing, "the kernel has no bpf() system call", fix: "a kernel with CONFIG_BPF_SYSCALL")
        }
        return DoctorCheck("bpf", .missing, "bpf() refused a map: \(error) (\(privileges))",
                           fix: "run as root, or give kprobe-run CAP_BPF and CAP_PERFMON (setcap cap_bpf,cap_perfmon+ep)")
    }

    static func btf() -> DoctorCheck {
        let path = "/sys/kernel/btf/vmlinux"
        var st = stat()
        guard stat(path, &st) == 0 else {
            return DoctorCheck("btf", .missing, "no \(path): no vmlinux.h, no CO-RE, no fentry",
                               fix: "a kernel with CONFIG_DEBUG_INFO_BTF; meanwhile kernel headers (kheaders, /lib/modules, --headers) compile probes")
        }
        return DoctorCheck("btf", .ok, "\(path) (\(st.st_size / 1024) KiB): vmlinux.h probes and CO-RE work")
    }

    static func kprobes(tracefs: String?) -> DoctorCheck {
        if FileSystem.exists("/sys/bus/event_source/devices/kprobe") {
            return DoctorCheck("kprobes", .ok, "kprobe PMU in /sys/bus/event_source/devices")
        }
        if let tracefs, FileSystem.exists(tracefs + "/kprobe_events") {
            return DoctorCheck("kprobes", .ok, "\(tracefs)/kprobe_events (no kprobe PMU: attached through tracefs)")
        }
        return DoctorCheck("kprobes", .missing, "no kprobe PMU and no kprobe_events: the kernel was built without CONFIG_KPROBES",
                           fix: "use tracepoints (SEC(\"tracepoint/…\")), raw tracepoints or fentry where BTF and trampolines work; or a kernel with CONFIG_KPROBES")
    }

    static func uprobes(tracefs: String?) -> DoctorCheck {
        if FileSystem.exists("/sys/bus/event_source/devices/uprobe") {
            return DoctorCheck("uprobes", .ok, "uprobe PMU in /sys/bus/event_source/devices")
        }
        if let tracefs, FileSystem.exists(tracefs + "/uprobe_events") {
            return DoctorCheck("uprobes", .ok, "\(tracefs)/uprobe_events")
        }
        return DoctorCheck("uprobes", .missing, "no uprobe PMU and no uprobe_events", fix: "a kernel with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS")
    }

    static func tracepoints(tracefs: String?) -> DoctorCheck {
        if let tracefs {
            guard FileSystem.isDirectory(tracefs + "/events") else {
                return DoctorCheck("tracefs", .missing, "\(tracefs) has no events/", fix: "a kernel with CONFIG_TRACEPOINTS and CONFIG_EVENT_TRACING")
            }
            return DoctorCheck("tracefs", .ok, "tracefs at \(tracefs): tracepoints and bpf_printk output")
        }
        let filesystems = (try? FileSystem.readString("/proc/filesystems")) ?? ""
        if filesystems.contains("\ttracefs") {
            return DoctorCheck("tracefs", .limited, "tracefs is not mounted; kprobe-run mounts it at \(Tracefs.standardPath) when a probe needs it (as root)",
                               fix: "mount -t tracefs tracefs \(Tracefs.standardPath)")
        }
        return DoctorCheck("tracefs", .missing, "the kernel has no tracefs: no tracepoints, no bpf_printk output", fix: "a kernel with CONFIG_FTRACE")
    }

    /// fentry needs BTF and BPF trampolines; some kernels (and sandboxes) have BTF and refuse the
    /// attach with EPERM or ENOTSUPP, so a tiny fentry program is loaded and attached for real.
    static func trampolines() -> DoctorCheck {
        guard let vmlinux = btf__load_vmlinux_btf() else {
            return DoctorCheck("fentry", .missing, "no kernel BTF, so no fentry/fexit", fix: "a kernel with CONFIG_DEBUG_INFO_BTF, or kprobes instead")
        }
        defer { btf__free(vmlinux) }
        let target = "vfs_read"
        // BTF_KIND_FUNC (12, fixed by the BTF format): the name imports ambiguously from two headers.
        let id = btf__find_by_name_kind(vmlinux, target, 12)
        guard id > 0 else { return DoctorCheck("fentry", .missing, "\(target) is not in the kernel's BTF", fix: "use kprobes") }
        var options = bpf_prog_load_opts()
        _ = withUnsafeMutableBytes(of: &options) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        options.sz = MemoryLayout<bpf_prog_load_opts>.size
        options.expected_attach_type = BPF_TRACE_FENTRY
        options.attach_btf_id = UInt32(id)
        // r0 = 0; exit
        var instructions = [bpf_insn(), bpf_insn()]
        instructions[0].code = UInt8(BPF_ALU64 | BPF_MOV | BPF_K)
        instructions[1].code = UInt8(BPF_JMP | BPF_EXIT)
        let program = bpf_prog_load(BPF_PROG_TYPE_TRACING, "kr_doctor", "GPL", instructions, 2, &options)
        guard program >= 0 else {
            return DoctorCheck("fentry", .missing, "the kernel refused an fentry program on \(target): \(Errno(-program))",
                               fix: "use kprobes or tracepoints; fentry/fexit need BPF trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)")
        }
        defer { close(program) }
        let link = bpf_link_create(program, 0, BPF_TRACE_FENTRY, nil)
        guard link >= 0 else {
            return DoctorCheck("fentry", .missing, "fentry programs load, and attaching one to \(target) fails: \(Errno(-link))",
                               fix: "use kprobes or tracepoints; this kernel (or its sandbox) has no working BPF trampolines")
        }
        close(link)
        return DoctorCheck("fentry", .ok, "fentry/fexit attach (tried on \(target))")
    }

    static func ringBuffer() -> DoctorCheck {
        let fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "kr_doctor_rb", 0, 0, UInt32(getpagesize()), nil)
        if fd >= 0 {
            close(fd)
            return DoctorCheck("ringbuf", .ok, "BPF ring buffers work")
        }
        return DoctorCheck("ringbuf", .missing, "the kernel refused a ring buffer: \(Errno(-fd))",
                           fix: "perf buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY) instead; ring buffers need Linux 5.8")
    }

    static func selinux() -> DoctorCheck {
        guard let enforce = try? FileSystem.readString("/sys/fs/selinux/enforce") else {
            return DoctorCheck("selinux", .ok, "not enabled")
        }
        if enforce.trimmingSpaces == "1" {
            return DoctorCheck("selinux", .limited, "enforcing: the policy may deny bpf() and perf_event_open",
                               fix: "on Android userdebug/eng builds: adb root; adb shell setenforce 0 (setenforce 1 afterwards)")
        }
        return DoctorCheck("selinux", .ok, "permissive")
    }

    static func unprivilegedBPF() -> DoctorCheck {
        let path = "/proc/sys/kernel/unprivileged_bpf_disabled"
        guard let value = try? FileSystem.readString(path) else { return DoctorCheck("unprivileged-bpf", .ok, "\(path) absent") }
        switch value.trimmingSpaces {
        case "0": return DoctorCheck("unprivileged-bpf", .ok, "allowed (\(path) = 0); tracing still needs CAP_BPF and CAP_PERFMON")
        case "1": return DoctorCheck("unprivileged-bpf", .limited, "disabled until reboot (\(path) = 1): tracing needs root or CAP_BPF+CAP_PERFMON",
                                     fix: "run kprobe-run as root or with CAP_BPF and CAP_PERFMON")
        default: return DoctorCheck("unprivileged-bpf", .limited, "disabled (\(path) = \(value.trimmingSpaces)): tracing needs root or CAP_BPF+CAP_PERFMON",
                                    fix: "run kprobe-run as root or with CAP_BPF and CAP_PERFMON")
        }
    }

    static func lockdown() -> DoctorCheck {
        guard let text = try? FileSystem.readString("/sys/kernel/security/lockdown"),
              let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else {
            return DoctorCheck("lockdown", .ok, "no lockdown (or securityfs not mounted)")
        }
        let mode = String(text[text.index(after: open)..<close])
        switch mode {
        case "none": return DoctorCheck("lockdown", .ok, "none")
        case "integrity": return DoctorCheck("lockdown", .limited, "integrity: bpf_probe_write_user is refused",
                                             fix: "boot with lockdown=none (or disable Secure Boot's lockdown) to lift it")
        default: return DoctorCheck("lockdown", .limited, "\(mode): reading kernel memory (bpf_probe_read_kernel, kprobes) is refused",
                                    fix: "boot with lockdown=none (or disable Secure Boot's lockdown) to lift it")
        }
    }
}
