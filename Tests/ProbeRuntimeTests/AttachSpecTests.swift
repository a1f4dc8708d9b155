import CLibBPF
import KprobeSupport
import Testing
@testable import ProbeRuntime

@Suite struct AttachSpecTests {
    @Test func parsesEveryForm() throws {
        let cases: [(String, AttachSpec.Kind, String, String)] = [
            ("kprobe:vfs_read=on_read", .kprobe, "vfs_read", "on_read"),
            ("kretprobe:do_sys_openat2=ret", .kretprobe, "do_sys_openat2", "ret"),
            ("tracepoint:syscalls:sys_enter_openat=handle", .tracepoint, "syscalls:sys_enter_openat", "handle"),
            ("raw_tracepoint:sched_switch=sw", .rawTracepoint, "sched_switch", "sw"),
            ("uprobe:/usr/bin/bash:readline=rl", .uprobe, "/usr/bin/bash:readline", "rl"),
            ("uretprobe:libc.so.6:malloc=_m1", .uretprobe, "libc.so.6:malloc", "_m1"),
            ("tp:sched:sched_switch=x", .tracepoint, "sched:sched_switch", "x"),
            ("raw_tp:sys_enter=y", .rawTracepoint, "sys_enter", "y"),
        ]
        for (text, kind, target, program) in cases {
            let spec = try AttachSpec(parsing: text)
            #expect(spec.kind == kind)
            #expect(spec.target == target)
            #expect(spec.program == program)
        }
        #expect(try AttachSpec(parsing: "uprobe:/opt/a=b/app:main=f").binaryAndSymbol! == ("/opt/a=b/app", "main"))
        #expect(try AttachSpec(parsing: "kprobe:vfs_read=on_read").description == "kprobe:vfs_read=on_read")
    }

    @Test func rejectsBadSpecsWithUsageErrors() {
        let bad: [(String, String)] = [
            ("vfs_read", "missing 'KIND:'"),
            ("fentry:vfs_read=f", "unknown probe kind 'fentry'"),
            ("kprobe:vfs_read", "missing '=FUNC'"),
            ("kprobe:vfs_read=1abc", "not a C function name"),
            ("kprobe:=f", "missing the probe target"),
            ("kprobe:a:b=f", "expected a kernel symbol"),
            ("tracepoint:sys_enter_openat=f", "expected CATEGORY:EVENT"),
            ("tracepoint:a:b:c=f", "expected CATEGORY:EVENT"),
            ("raw_tracepoint:a:b=f", "expected a tracepoint name"),
            ("uprobe:/bin/bash=f", "expected PATH:SYMBOL"),
            ("uprobe:/bin/bash:=f", "expected PATH:SYMBOL"),
        ]
        for (text, why) in bad {
            do {
                _ = try AttachSpec(parsing: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.kind == .usage)
                #expect(error.message.contains(why), "\(error.message)")
                #expect(error.message.contains("kprobe:SYM=FUNC"))
                #expect(error.message.contains("uretprobe:PATH:SYM=FUNC"))
            }
        }
    }

    @Test func specsBecomeAttachPoints() throws {
        #expect(AttachPoint(spec: try AttachSpec(parsing: "kretprobe:vfs_read+0x10=f")) == .kprobe(symbol: "vfs_read", offset: 16, isReturn: true))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "tracepoint:sched:sched_switch=f")) == .tracepoint(category: "sched", event: "sched_switch"))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "uretprobe:/bin/bash:readline=f")) == .uprobe(path: "/bin/bash", symbol: "readline", isReturn: true))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "kprobe:x=f")).programType == BPF_PROG_TYPE_KPROBE)
    }
}
