import Testing
import KprobeSupport

struct BCCNameTests {
    @Test(arguments: [
        ("kprobe__vfs_read", BCCName.kprobe(symbol: "vfs_read")),
        ("kretprobe__do_sys_openat2", .kretprobe(symbol: "do_sys_openat2")),
        ("tracepoint__sched__sched_switch", .tracepoint(category: "sched", event: "sched_switch")),
        ("raw_tracepoint__sched_wakeup", .rawTracepoint(event: "sched_wakeup")),
    ])
    func conventionalNamesRoundTrip(_ name: String, _ expected: BCCName) {
        #expect(BCCName(function: name) == expected)
        #expect(expected.name == name)
    }

    @Test(arguments: ["do_count", "kprobe__", "tracepoint__sched", "tracepoint____e", "tracepoint__sched__", "syscall__execve"])
    func otherNamesFollowNoConvention(_ name: String) {
        #expect(BCCName(function: name) == nil)
    }
}
