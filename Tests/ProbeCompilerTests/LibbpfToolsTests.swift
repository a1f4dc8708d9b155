import FoundationEssentials
import Glibc
import KprobeSupport
import Testing
@testable import ProbeCompiler
import TestSupport

/// What libbpf-tools-style probes need from the compile (the worker's side; loading them is
/// IntegrationTests/LibbpfStyleTests).
@Suite struct LibbpfToolsTests {
    static let recordTypes = """
        struct event { int pid; char comm[16]; char args[256]; };
        struct sample { __u64 ts; __u32 cpu; };
        struct { __uint(type, 27); __uint(max_entries, 4096); } events SEC(".maps");
        struct { __uint(type, 4); __uint(key_size, 4); __uint(value_size, 4); } samples SEC(".maps");
        struct { __uint(type, 27); __uint(max_entries, 4096); } direct SEC(".maps");

        /* libbpf-tools' compat wrappers: the record type is only seen at their callers. */
        static __always_inline void *reserve_buf(__u64 size) { return bpf_ringbuf_reserve(&events, size, 0); }
        static __always_inline void submit_buf(void *buf) { bpf_ringbuf_submit(buf, 0); }
        static __always_inline void emit(void *ctx, void *data, __u64 size) {
            bpf_perf_event_output(ctx, &samples, 0xffffffffULL, data, size);
        }

        char LICENSE[] SEC("license") = "GPL";

        SEC("tracepoint/syscalls/sys_enter_execve")
        int on_exec(void *ctx)
        {
            struct event *e = reserve_buf(sizeof(*e));
            if (!e) return 0;
            e->pid = bpf_get_current_pid_tgid() >> 32;
            submit_buf(e);
            struct sample s = { .ts = bpf_ktime_get_ns() };
            emit(ctx, &s, sizeof(s));
            struct sample *d = bpf_ringbuf_reserve(&direct, sizeof(*d), 0);
            if (d) bpf_ringbuf_submit(d, 0);
            return 0;
        }
        """

    @Test func recordTypesGoToTheMetadataWithTheirBTF() throws {
        let object = try builtWorker().compile(probeRequest(Self.recordTypes))
        let elf = ELFObject(bytes: object.elf)
        let section = try #require(elf.section(named: ProbeMetadata.sectionName))
        let metadata = try JSONDecoder().decode(ProbeMetadata.self, from: Data(section.prefix { $0 != 0 }))
        #expect(metadata.events == ["events": "struct event", "samples": "struct sample", "direct": "struct sample"])
        #expect(elf.sectionNames.contains(ProbeMetadata.sectionName + ".types"))
        // The record's members are in the object's BTF, which the runtime decodes them with.
        let btf = try #require(elf.section(named: ".BTF"))
        #expect(ELFObject(bytes: btf).contains("comm") && ELFObject(bytes: btf).contains("args"))
    }

    /// Only the probe's functions and those they reach are analyzed (not every inline function
    /// of the headers): wrappers in an included header count through their callers, and a
    /// header's function that no probe function reaches adds nothing.
    @Test func recordTypesThroughWrappersOfAHeader() throws {
        let header = """
            struct event { int pid; char comm[16]; };
            struct unused { long never; };
            struct { __uint(type, 27); __uint(max_entries, 4096); } events SEC(".maps");
            struct { __uint(type, 27); __uint(max_entries, 4096); } idle SEC(".maps");
            static __always_inline void *reserve_buf(__u64 size) { return bpf_ringbuf_reserve(&events, size, 0); }
            static __always_inline void submit_buf(void *buf) { bpf_ringbuf_submit(buf, 0); }
            static __always_inline void never_called(void) {
                struct unused *u = bpf_ringbuf_reserve(&idle, sizeof(*u), 0);
                if (u) bpf_ringbuf_submit(u, 0);
            }
            """
        var request = try probeRequest("""
            #include "wrappers.h"
            char LICENSE[] SEC("license") = "GPL";
            SEC("tracepoint/sched/sched_process_exec")
            int on_exec(void *ctx)
            {
                struct event *e = reserve_buf(sizeof(*e));
                if (e) submit_buf(e);
                return 0;
            }
            """, arguments: ["-I/kprobe-run-test"])
        request.virtualFiles.append(VirtualFile(path: "/kprobe-run-test/wrappers.h", contents: header))
        let object = try builtWorker().compile(request)
        let section = try #require(ELFObject(bytes: object.elf).section(named: ProbeMetadata.sectionName))
        let metadata = try JSONDecoder().decode(ProbeMetadata.self, from: Data(section.prefix { $0 != 0 }))
        #expect(metadata.events == ["events": "struct event"])
    }

    @Test func probeWithoutRecordsGetsNoMetadata() throws {
        let object = try builtWorker().compile(probeRequest(CompileTests.openat))
        #expect(ELFObject(bytes: object.elf).section(named: ProbeMetadata.sectionName) == nil)
    }

    @Test func metadataJSONDecodesAsTheSchema() throws {
        let metadata = ProbeMetadata(events: ["events": "struct event", "q\"uote": "t\\b\n"], histograms: ["dist": "log2"],
                                     stackTraces: ["stacks"], tables: ["dist": "histogram"], programs: ["f": "kprobe/f"])
        let decoded = try JSONDecoder().decode(ProbeMetadata.self, from: Data(metadata.json().utf8))
        #expect(decoded == metadata)
        // The compiler's facts about maps; absent ones are not written (older objects' bytes stay).
        #expect(!metadata.json().contains("slots"))
        var facts = ProbeMetadata()
        for (table, key, value) in [("slots", "struct hist", "linear"), ("syscallKeys", "data", ""),
                                    ("syscallKeyConditions", "data", "!by_pid"), ("events", "events", "struct event")] {
            facts.set(table: table, key: key, value: value)
        }
        #expect(facts == ProbeMetadata(events: ["events": "struct event"], slots: ["struct hist": "linear"],
                                       syscallKeys: ["data": ""], syscallKeyConditions: ["data": "!by_pid"]))
        #expect(try JSONDecoder().decode(ProbeMetadata.self, from: Data(facts.json().utf8)) == facts)
        // A writer that leaves fields out (the worker writes only events) still decodes.
        #expect(try JSONDecoder().decode(ProbeMetadata.self, from: Data(#"{"events":{"e":"struct x"}}"#.utf8))
                == ProbeMetadata(events: ["e": "struct x"]))
    }

    /// `__kconfig` externs declared in a header that the precompiled header stands for keep their
    /// BTF: the object is the same as without the precompiled header.
    @Test func kconfigExternsInAPrecompiledHeader() throws {
        let fixture = try PCHFixture()
        try FileSystem.writeAtomically(Array("""
            #include <bpf/bpf_helpers.h>
            extern int LINUX_KERNEL_VERSION __kconfig;
            extern _Bool CONFIG_BPF_SYSCALL __kconfig __weak;

            """.utf8), to: fixture.headers + "/kconfig_externs.h")
        let source = """
            #include "vmlinux.h"
            #include "kconfig_externs.h"
            int seen;
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int on_getppid(void *ctx) { seen = LINUX_KERNEL_VERSION + CONFIG_BPF_SYSCALL; return 0; }
            char LICENSE[] SEC("license") = "GPL";
            """
        let compiler = try builtWorker()
        let plain = try compiler.compile(fixture.request(source, precompiled: false))
        _ = try compiler.compile(fixture.request(source))
        try fixture.waitForHeaders()
        let precompiled = try compiler.compile(fixture.request(source))
        #expect(precompiled.notes.contains { $0.hasPrefix("loaded precompiled header") })
        #expect(precompiled.elf == plain.elf)
        let btf = try #require(ELFObject(bytes: precompiled.elf).section(named: ".BTF"))
        #expect(ELFObject(bytes: btf).contains(".kconfig") && ELFObject(bytes: btf).contains("LINUX_KERNEL_VERSION"))
    }

    /// Both back ends: clang's for "bpf", ours after a host-triple front end (kernel headers).
    @Test(arguments: ["bpf", "x86_64-linux-gnu"])
    func cpuVersionReachesTheBackEnd(triple: String) throws {
        // A 32-bit comparison: v3 has jumps on 32-bit registers (class BPF_JMP32, 0x06), v1 does not.
        let body = """
            char LICENSE[] SEC("license") = "GPL";
            int limit;
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int on_getppid(void *ctx) { unsigned int pid = bpf_get_current_pid_tgid(); if (pid > (unsigned int)limit) bpf_printk("%u", pid); return 0; }
            """
        let compiler = try builtWorker()
        func jmp32Count(_ cpu: BPFCPU?) throws -> Int {
            var request = try probeRequest(body, triple: triple)
            request.cpu = cpu
            let code = try #require(ELFObject(bytes: try compiler.compile(request).elf).section(named: "tracepoint/syscalls/sys_enter_getppid"))
            return stride(from: 0, to: code.count, by: 8).filter { code[$0] & 0x07 == 0x06 }.count
        }
        #expect(try jmp32Count(.v1) == 0)
        #expect(try jmp32Count(nil) == 0)
        #expect(try jmp32Count(.v3) > 0)
    }

    @Test func newestCPUForAKernel() throws {
        #expect(BPFCPU.newest(forRelease: "6.18.44-fc") == .v3)
        #expect(BPFCPU.newest(forRelease: "5.1.0") == .v3)
        #expect(BPFCPU.newest(forRelease: "4.19.0-20-amd64") == .v2)
        #expect(BPFCPU.newest(forRelease: "4.9.337") == .v1)
        #expect(BPFCPU.newest(forRelease: "weird") == .v1)
        #expect(BPFCPU.preferred(upTo: .v3) == .v2)
        #expect(BPFCPU.preferred(upTo: .v1) == .v1)
        // Refused v2 code is compiled again as v3 where the kernel runs it; nothing newer, no retry.
        #expect(BPFCPU.fallback(after: .v2, upTo: .v3) == .v3)
        #expect(BPFCPU.fallback(after: .v2, upTo: .v2) == nil)
        #expect(BPFCPU.fallback(after: .v3, upTo: .v3) == nil)
        #expect(BPFCPU.fallback(after: .v1, upTo: .v1) == nil)
        let scratch = try ScratchDirectory()
        #expect(BPFCPU.newest(forHeaderTree: scratch.path) == nil)
        _ = try scratch.makeDirectory("include")
        _ = try scratch.makeDirectory("include/generated")
        _ = try scratch.makeDirectory("include/generated/uapi")
        _ = try scratch.makeDirectory("include/generated/uapi/linux")
        // 6.1.0 and 4.14.0 as kbuild writes them.
        try scratch.write("include/generated/uapi/linux/version.h", "#define LINUX_VERSION_CODE 393472\n#define KERNEL_VERSION(a,b,c) x\n")
        #expect(BPFCPU.newest(forHeaderTree: scratch.path) == .v3)
        try scratch.write("include/generated/uapi/linux/version.h", "#define LINUX_VERSION_CODE 265728\n")
        #expect(BPFCPU.newest(forHeaderTree: scratch.path) == .v2)
    }

    /// Macros of libbpf releases after the installed one are there, and guarded.
    @Test func newerLibbpfMacros() throws {
        let body = """
            #include <bpf/bpf_tracing.h>
            struct pt_regs { unsigned long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss; };
            extern int some_kfunc(int x) __weak __ksym;
            char LICENSE[] SEC("license") = "GPL";
            int seen;
            SEC("uprobe") int BPF_UPROBE(on_call, int a) { seen = a + bpf_ksym_exists(some_kfunc); return 0; }
            SEC("uretprobe") int BPF_URETPROBE(on_return, int ret) { seen = ret; return 0; }
            """
        let object = try builtWorker().compile(probeRequest(body, arguments: ["-D__TARGET_ARCH_x86"]))
        #expect(ELFObject(bytes: object.elf).sectionNames.contains("uretprobe"))
    }

    /// LLVM 14 aborts on a "type matches" relocation (LLVM 15's): the probe gets a compile error
    /// that says what to use instead, not a crashed worker.
    @Test func typeMatchesIsAClearCompileError() throws {
        let body = """
            #include <bpf/bpf_core_read.h>
            struct shape { int a; } __attribute__((preserve_access_index));
            char LICENSE[] SEC("license") = "GPL";
            int seen;
            SEC("tracepoint/syscalls/sys_enter_getppid") int on_getppid(void *ctx) { seen = bpf_core_type_matches(struct shape); return 0; }
            """
        let error = #expect(throws: CompileError.self) { try builtWorker().compile(probeRequest(body)) }
        #expect(error?.message.contains("bpf_core_type_matches_needs_clang_15__use_bpf_core_type_exists") == true, "\(error?.message ?? "")")
    }

    /// A call of an undeclared function (bpf_htons without bpf_endian.h) stops the compile: it
    /// would be an extern that libbpf cannot resolve when the object is opened.
    @Test func undeclaredFunctionIsACompileError() throws {
        let body = """
            char LICENSE[] SEC("license") = "GPL";
            int seen;
            SEC("tracepoint/syscalls/sys_enter_getppid") int on_getppid(void *ctx) { seen = bpf_htons(8); return 0; }
            """
        let error = #expect(throws: CompileError.self) { try builtWorker().compile(probeRequest(body)) }
        #expect(error?.message.contains("implicit declaration of function 'bpf_htons'") == true, "\(error?.message ?? "")")
    }
}
