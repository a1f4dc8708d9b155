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
            ("usdt:/usr/bin/app:my_provider:start=on_start", .usdt, "/usr/bin/app:my_provider:start", "on_start"),
            ("usdt:my_provider:start=on_start", .usdt, "my_provider:start", "on_start"),
            ("kprobe:vfs_*=count", .kprobe, "vfs_*", "count"),
            ("tracepoint:syscalls:sys_enter_*=count", .tracepoint, "syscalls:sys_enter_*", "count"),
            ("tracepoint:*:sched_switch=count", .tracepoint, "*:sched_switch", "count"),
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
            ("usdt:start=f", "expected PATH:PROVIDER:NAME"),
            ("usdt::provider:start=f", "expected PATH:PROVIDER:NAME"),
            ("usdt:/bin/app:provider:=f", "expected PATH:PROVIDER:NAME"),
            ("usdt:/bin/app::start=f", "expected PATH:PROVIDER:NAME"),
            ("uprobe:/bin/bash:read*=f", "wildcards are accepted in kprobe, kretprobe and tracepoint names only"),
            ("usdt:/bin/app:p:*=f", "wildcards are accepted"),
        ]
        for (text, why) in bad {
            do {
                _ = try AttachSpec(parsing: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.kind == .usage)
                #expect(error.message.contains(why), "\(error.message)")
                #expect(error.message.contains("kprobe:SYM=FUNC"))
                #expect(error.message.contains("usdt:PATH:PROVIDER:NAME=FUNC"))
            }
        }
    }

    @Test func specsBecomeAttachPoints() throws {
        #expect(AttachPoint(spec: try AttachSpec(parsing: "kretprobe:vfs_read+0x10=f")) == .kprobe(symbol: "vfs_read", offset: 16, isReturn: true))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "tracepoint:sched:sched_switch=f")) == .tracepoint(category: "sched", event: "sched_switch"))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "uretprobe:/bin/bash:readline=f")) == .uprobe(path: "/bin/bash", symbol: "readline", isReturn: true))
        #expect(AttachPoint(spec: try AttachSpec(parsing: "kprobe:x=f")).programType == BPF_PROG_TYPE_KPROBE)
        let usdt = AttachPoint(spec: try AttachSpec(parsing: "usdt:/opt/a:b/app:prov:probe_1=f"))
        #expect(usdt == .usdt(path: "/opt/a:b/app", provider: "prov", name: "probe_1"))
        #expect(usdt.programType == BPF_PROG_TYPE_KPROBE)
        #expect(usdt.summary == "usdt:/opt/a:b/app:prov:probe_1")
        let inProcess = AttachPoint(spec: try AttachSpec(parsing: "usdt:prov:probe_1=f"))
        #expect(inProcess == .usdt(path: "", provider: "prov", name: "probe_1"))
        #expect(inProcess.summary == "usdt:prov:probe_1")
    }
}

@Suite struct WildcardTests {
    /// available_filter_functions as the kernel writes it: module functions carry "[module]",
    /// and a static function of the same name in two files is listed twice.
    static let functions = Tracefs.functionNames(availableFilterFunctions: """
        vfs_read
        vfs_write
        vfs_writev [overlay]
        do_sys_openat2
        vfs_read
        __x64_sys_openat
        """)

    @Test func functionListDropsModulesAndRepeats() {
        #expect(WildcardTests.functions == ["vfs_read", "vfs_write", "vfs_writev", "do_sys_openat2", "__x64_sys_openat"])
    }

    @Test func patternsMatchLikeTheShell() throws {
        #expect(Wildcard.isPattern("vfs_*") && Wildcard.isPattern("vfs_rea?") && Wildcard.isPattern("vfs_[rw]*"))
        #expect(!Wildcard.isPattern("vfs_read"))
        #expect(try Wildcard.expand("vfs_*", in: WildcardTests.functions, noun: "function", source: "a list", listing: "kprobe:*") == ["vfs_read", "vfs_write", "vfs_writev"])
        #expect(try Wildcard.expand("vfs_write?", in: WildcardTests.functions, noun: "function", source: "a list", listing: "kprobe:*") == ["vfs_writev"])
        #expect(try Wildcard.expand("*sys_open*", in: WildcardTests.functions, noun: "function", source: "a list", listing: "kprobe:*") == ["do_sys_openat2", "__x64_sys_openat"])
        let events = ["syscalls:sys_enter_openat", "syscalls:sys_exit_openat", "syscalls:sys_enter_read", "sched:sched_switch"]
        #expect(try Wildcard.expand("syscalls:sys_enter_*", in: events, noun: "tracepoint", source: "available_events", listing: "tracepoint:*") == ["syscalls:sys_enter_openat", "syscalls:sys_enter_read"])
        #expect(try Wildcard.expand("*:*_openat", in: events, noun: "tracepoint", source: "available_events", listing: "tracepoint:*").count == 2)
    }

    @Test func noMatchIsAnAttachErrorThatSaysWhereToLook() {
        do {
            _ = try Wildcard.expand("ext4_*", in: WildcardTests.functions, noun: "kernel function", source: "available_filter_functions", listing: "kprobe:*")
            Issue.record("expanded a pattern that matches nothing")
        } catch {
            #expect(error.kind == .attach)
            #expect(error.message.contains("no kernel function in available_filter_functions matches 'ext4_*'"), "\(error.message)")
            #expect(error.message.contains("kprobe-run -l 'kprobe:*'"), "\(error.message)")
        }
    }

    @Test func tooManyMatchesAreRefused() {
        let many = (0..<1500).map { "func_\($0)" }
        #expect(throws: Never.self) { try Wildcard.expand("func_1*", in: many, noun: "function", source: "a list", listing: "kprobe:*") }
        do {
            _ = try Wildcard.expand("func_*", in: many, noun: "kernel function", source: "available_filter_functions", listing: "kprobe:*")
            Issue.record("attached 1500 probes")
        } catch {
            #expect(error.kind == .attach)
            #expect(error.message.contains("matches 1500 kernel functions in available_filter_functions, more than the 1000"), "\(error.message)")
            #expect(error.message.contains("narrow the pattern"))
        }
    }
}
