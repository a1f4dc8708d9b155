import Testing
import Glibc
import KprobeSupport
@testable import ProbeCompiler

/// Real compiles through the kprobe-run-cc built with the tests.
@Suite struct CompileTests {
    static let openat = """
        char LICENSE[] SEC("license") = "GPL";

        SEC("tracepoint/syscalls/sys_enter_openat")
        int handle_openat(void *ctx)
        {
            bpf_printk("openat from pid %d", bpf_get_current_pid_tgid() >> 32);
            return 0;
        }
        """

    static let core = """
        #include <bpf/bpf_core_read.h>
        struct task_struct {
            int tgid;
            struct task_struct *real_parent;
        } __attribute__((preserve_access_index));

        char LICENSE[] SEC("license") = "GPL";

        SEC("tracepoint/sched/sched_process_exec")
        int on_exec(void *ctx)
        {
            struct task_struct *task = (struct task_struct *)bpf_get_current_task();
            int ppid = BPF_CORE_READ(task, real_parent, tgid);
            bpf_printk("parent %d", ppid);
            return 0;
        }
        """

    func expectBPFObject(_ object: CompiledObject) {
        let elf = ELFObject(bytes: object.elf)
        #expect(elf.isELF)
        #expect(elf.machine == 247)
        let sections = elf.sectionNames
        #expect(sections.contains(".BTF"))
        #expect(sections.contains(".BTF.ext"))
    }

    @Test func tracepointProbe() throws {
        let clock = ContinuousClock()
        var object: CompiledObject?
        let elapsed = try clock.measure { object = try builtWorker().compile(probeRequest(Self.openat)) }
        let compiled = try #require(object)
        expectBPFObject(compiled)
        #expect(ELFObject(bytes: compiled.elf).sectionNames.contains("tracepoint/syscalls/sys_enter_openat"))
        print("compile of a small probe through the worker: \(elapsed)")
    }

    @Test func syntaxErrorNamesTheUsersFile() throws {
        let body = "int f(void) {\n    int a = 1\n    return a;\n}\n"
        #expect {
            try builtWorker().compile(probeRequest(body))
        } throws: { error in
            let error = error as! CompileError
            return error.kind == .compile && error.message.contains("probe.c:\(preludeLines + 2):14: error: expected ';'")
                && !error.message.contains("/tmp")
        }
    }

    @Test func warningsComeWithTheObject() throws {
        let object = try builtWorker().compile(probeRequest(
            "SEC(\"tracepoint/x/y\") int f(void *ctx) { int unused; return 0; }\n", arguments: ["-Wall"]))
        expectBPFObject(object)
        #expect(object.diagnostics.contains("probe.c:\(preludeLines + 1):"))
        #expect(object.diagnostics.contains("warning: unused variable 'unused'"))
    }

    @Test func unknownFlagIsACompileError() throws {
        #expect {
            try builtWorker().compile(probeRequest(Self.openat, arguments: ["-fno-such-flag"]))
        } throws: { error in
            (error as! CompileError).message.contains("-fno-such-flag")
        }
    }

    @Test func coreProbeInTwoWorkersAtOnce() async throws {
        let compiler = try builtWorker()
        let request = try probeRequest(Self.core)
        let objects = try await withThrowingTaskGroup(of: CompiledObject.self) { group in
            for _ in 0..<2 { group.addTask { try compiler.compile(request) } }
            var objects: [CompiledObject] = []
            for try await object in group { objects.append(object) }
            return objects
        }
        #expect(objects.count == 2)
        for object in objects { expectBPFObject(object) }
        #expect(objects[0].elf == objects[1].elf)
    }

    @Test func hostTripleSkipsUnusedArchAssembly() throws {
        let body = """
            static inline unsigned long native_save_fl(void)
            {
                unsigned long flags;
                asm volatile("pushf ; pop %0" : "=rm" (flags) : : "memory");
                return flags;
            }
            struct task { int pid; char comm[16]; };
            char LICENSE[] SEC("license") = "GPL";
            SEC("kprobe/do_nanosleep")
            int probe(struct task *t)
            {
                int pid = 0;
                bpf_probe_read_kernel(&pid, sizeof(pid), &t->pid);
                return pid;
            }
            """
        let object = try builtWorker().compile(probeRequest(body, triple: "x86_64-linux-gnu"))
        expectBPFObject(object)
        #expect(ELFObject(bytes: object.elf).sectionNames.contains("kprobe/do_nanosleep"))
    }

    @Test func hostTripleReportsArchAssemblyThatIsUsed() throws {
        let body = """
            static inline unsigned long native_save_fl(void)
            {
                unsigned long flags;
                asm volatile("pushf ; pop %0" : "=rm" (flags) : : "memory");
                return flags;
            }
            SEC("kprobe/do_nanosleep")
            int probe(void *ctx) { return native_save_fl(); }
            """
        #expect {
            try builtWorker().compile(probeRequest(body, triple: "x86_64-linux-gnu"))
        } throws: { error in
            let message = (error as! CompileError).message
            return message.contains("probe.c:\(preludeLines + 4):18: error:") && message.contains("inline assembly")
        }
    }

    /// LLVM 14's BPF back end aborts on this (report_fatal_error); the worker dies with the
    /// message and kprobe-run gets a compile error instead of dying too.
    @Test func llvmFatalErrorBecomesACompileError() throws {
        let body = """
            int counter;
            SEC("tracepoint/x/y") int f(void *ctx) { return __sync_fetch_and_add(&counter, 1); }
            """
        #expect {
            try builtWorker().compile(probeRequest(body))
        } throws: { error in
            let message = (error as! CompileError).message
            return message.contains("compiler worker") && message.contains("status 70") && message.contains("XADD")
        }
    }
}
