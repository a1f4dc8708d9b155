import Testing
@testable import ProbeCompiler

@Suite struct TracepointFormatTests {
    static let sched = """
    name: sched_process_exec
    ID: 312
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

    \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
    \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
    \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;
    \tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;
    \tfield:const void * skbaddr;\toffset:40;\tsize:8;\tsigned:0;
    \tfield:u8 saddr[4];\toffset:48;\tsize:4;\tsigned:0;

    print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
    """

    @Test func structFollowsOffsets() {
        let text = TracepointFormat.structDefinition(category: "sched", event: "sched_process_exec", format: Self.sched)
        #expect(text == """
        struct tracepoint__sched__sched_process_exec {
            char __pad0[8];
            int data_loc_filename;
            __s32 pid;
            __s32 old_pid;
            char comm[16];
            char __pad1[4];
            const void * skbaddr;
            __u8 saddr[4];
        };
        """)
    }

    @Test func referencedTracepointsFromMacrosAndNames() {
        let source = "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }\nint tracepoint__net__netif_rx(struct tracepoint__net__netif_rx *args) { return 0; }\n// TRACEPOINT_PROBE(a, b)"
        let found = TracepointFormat.referencedTracepoints(in: source).map { "\($0.category):\($0.event)" }
        #expect(found == ["sched:sched_switch", "net:netif_rx"])
    }
}
