import CLibBPF
import Testing
@testable import ProbeRuntime

@Suite struct SectionTests {
    @Test func classifiesLibbpfSections() {
        #expect(AttachPoint.classify(section: "kprobe/do_sys_openat2") == .kprobe(symbol: "do_sys_openat2", offset: 0, isReturn: false))
        #expect(AttachPoint.classify(section: "kretprobe/vfs_read+0x10") == .kprobe(symbol: "vfs_read", offset: 16, isReturn: true))
        #expect(AttachPoint.classify(section: "tracepoint/syscalls/sys_enter_openat") == .tracepoint(category: "syscalls", event: "sys_enter_openat"))
        #expect(AttachPoint.classify(section: "tp/sched/sched_switch") == .tracepoint(category: "sched", event: "sched_switch"))
        #expect(AttachPoint.classify(section: "raw_tp/sched_switch") == .rawTracepoint("sched_switch"))
        #expect(AttachPoint.classify(section: "raw_tracepoint/sys_enter") == .rawTracepoint("sys_enter"))
        #expect(AttachPoint.classify(section: "uprobe//usr/bin/bash:readline") == .uprobe(path: "/usr/bin/bash", symbol: "readline", isReturn: false))
        #expect(AttachPoint.classify(section: "uretprobe/libc.so.6:malloc") == .uprobe(path: "libc.so.6", symbol: "malloc", isReturn: true))
        #expect(AttachPoint.classify(section: "perf_event") == .perfEvent)
        #expect(AttachPoint.classify(section: "fentry/do_sys_openat2") == .libbpf(section: "fentry/do_sys_openat2"))
        #expect(AttachPoint.classify(section: "tp_btf/sched_switch") == .libbpf(section: "tp_btf/sched_switch"))
        #expect(AttachPoint.classify(section: "usdt/libc.so.6:libc:setjmp") == .usdt(path: "libc.so.6", provider: "libc", name: "setjmp"))
        #expect(AttachPoint.classify(section: "usdt//usr/bin/app:my_provider:start") == .usdt(path: "/usr/bin/app", provider: "my_provider", name: "start"))
    }

    @Test func sectionsWithoutTargetsNeedASpec() {
        for section in ["kprobe", "kretprobe", "uprobe", "tracepoint", "tp/syscalls", "raw_tp", "fentry", "uprobe//bin/bash", "usdt", "usdt//bin/app:only_name"] {
            guard case .needsSpec = AttachPoint.classify(section: section) else {
                Issue.record("\(section) should need --attach")
                continue
            }
        }
        #expect(AttachPoint.attachExample(section: "kprobe", program: "f") == "kprobe:SYMBOL=f")
        #expect(AttachPoint.attachExample(section: "uretprobe", program: "f") == "uretprobe:/PATH/TO/BINARY:SYMBOL=f")
        #expect(AttachPoint.attachExample(section: "usdt", program: "f") == "usdt:/PATH/TO/BINARY:PROVIDER:NAME=f")
        #expect(AttachPoint.attachExample(section: "kprobe", program: "f", readsUSDT: true) == "usdt:/PATH/TO/BINARY:PROVIDER:NAME=f")
        #expect(AttachPoint.attachExample(section: "tracepoint", program: "f", readsUSDT: true) == "tracepoint:CATEGORY:EVENT=f")
    }

    @Test func otherProgramTypesAreNotAttached() {
        #expect(AttachPoint.classify(section: "socket", function: "filter", type: BPF_PROG_TYPE_SOCKET_FILTER) == .notAttached)
        #expect(AttachPoint.classify(section: "xdp", function: "pass", type: BPF_PROG_TYPE_XDP) == .notAttached)
        guard case .needsSpec = AttachPoint.classify(section: "weird", function: "f", type: BPF_PROG_TYPE_UNSPEC) else {
            Issue.record("an unknown SEC must need --attach")
            return
        }
    }

    @Test func bccFunctionNames() {
        #expect(AttachPoint.classify(section: "kprobe", function: "kprobe__vfs_read", type: BPF_PROG_TYPE_KPROBE) == .kprobe(symbol: "vfs_read", offset: 0, isReturn: false))
        #expect(AttachPoint.classify(section: "kretprobe__vfs_write", function: "x", type: BPF_PROG_TYPE_UNSPEC) == .kprobe(symbol: "vfs_write", offset: 0, isReturn: true))
        #expect(AttachPoint.classifyBCC("tracepoint__sched__sched_switch") == .tracepoint(category: "sched", event: "sched_switch"))
        #expect(AttachPoint.classifyBCC("raw_tracepoint__sched_switch") == .rawTracepoint("sched_switch"))
        #expect(AttachPoint.classifyBCC("tracepoint__sched") == nil)
        #expect(AttachPoint.classifyBCC("do_count") == nil)
        // A SEC that names its target wins over the function name.
        #expect(AttachPoint.classify(section: "kprobe/vfs_open", function: "kprobe__vfs_read", type: BPF_PROG_TYPE_KPROBE) == .kprobe(symbol: "vfs_open", offset: 0, isReturn: false))
    }

    @Test func onlineCPUList() {
        #expect(Attacher.onlineCPUs("0-3,6\n") == [0, 1, 2, 3, 6])
        #expect(Attacher.onlineCPUs("0\n") == [0])
        #expect(Attacher.onlineCPUs("") == [0])
    }
}
