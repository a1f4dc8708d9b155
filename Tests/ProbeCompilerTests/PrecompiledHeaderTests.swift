import Testing
import Glibc
import KprobeSupport
@testable import ProbeCompiler
import TestSupport

/// A header entry of the vmlinux.h kind, small enough for the tests to be quick, with what
/// makes precompiled headers subtle: include guards, CO-RE records, `__COUNTER__`. Parsed for
/// x86_64 it stands for a kernel tree (CO-RE relocations exist only when parsing for BPF).
let fakeVmlinux = """
    #ifndef __VMLINUX_H__
    #define __VMLINUX_H__
    \(scalarTypedefs)
    #ifdef __bpf__
    #pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
    #endif
    struct task_struct { int pid; int tgid; struct task_struct *real_parent; char comm[16]; };
    struct trace_event_raw_sys_enter { unsigned long long unused; long id; unsigned long args[6]; };
    #ifdef __bpf__
    #pragma clang attribute pop
    #endif
    enum bpf_map_type { BPF_MAP_TYPE_UNSPEC = 0, BPF_MAP_TYPE_HASH = 1 };
    enum { BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2 };
    #define UNIQUE_LOCAL(prefix) __PASTE(prefix, __COUNTER__)
    #define __PASTE(a, b) __PASTE2(a, b)
    #define __PASTE2(a, b) a##b
    static inline int header_min(int a, int b) { int UNIQUE_LOCAL(x) = a; return a < b ? a : b; }
    #endif

    """

let pchProbe = """
    // A probe that starts with its includes, as most do.
    #include "vmlinux.h"
    #include <bpf/bpf_helpers.h>
    #include <bpf/bpf_core_read.h>
    #include <bpf/bpf_tracing.h>

    struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 128);
        __type(key, __u32);
        __type(value, __u64);
    } counts SEC(".maps");

    char LICENSE[] SEC("license") = "GPL";

    SEC("tracepoint/syscalls/sys_enter_openat")
    int on_openat(struct trace_event_raw_sys_enter *ctx)
    {
        struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    #ifdef __bpf__
        __u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
    #else
        struct task_struct *parent = 0;
        __u32 ppid = 0;
        bpf_probe_read_kernel(&parent, sizeof(parent), &task->real_parent);
        bpf_probe_read_kernel(&ppid, sizeof(ppid), &parent->tgid);
    #endif
        int UNIQUE_LOCAL(probe_local) = header_min((int)ctx->id, 7);
        __u64 one = 1, *count = bpf_map_lookup_elem(&counts, &ppid);
        if (count) __sync_fetch_and_add(count, 1); else bpf_map_update_elem(&counts, &ppid, &one, BPF_ANY);
        bpf_printk("openat by child of %d", ppid);
        return 0;
    }
    """

/// A header directory, a private pch directory and the request that uses both.
struct PCHFixture {
    let scratch: ScratchDirectory
    let headers: String
    let settings: PrecompiledHeaderSettings

    init() throws {
        scratch = try ScratchDirectory()
        headers = try scratch.makeDirectory("headers")
        try FileSystem.writeAtomically(Array(fakeVmlinux.utf8), to: headers + "/vmlinux.h")
        settings = PrecompiledHeaderSettings(directory: try scratch.makeDirectory("pch"), headerIdentity: "btf-test")
    }

    func request(_ source: String = pchProbe, triple: String = "bpf", precompiled: Bool = true) throws -> CompileRequest {
        let libbpf = try LibbpfHeaders.load()
        return CompileRequest(
            sourcePath: "probe.c", source: source, frontendTriple: triple,
            arguments: ["-nostdinc", "-I" + headers, libbpf.includeArgument, "-D__TARGET_ARCH_x86"],
            virtualFiles: libbpf.virtualFiles, precompiledHeaders: precompiled ? settings : nil)
    }

    var pchFiles: [String] {
        (try? ScratchDirectory.list(settings.directory))?.filter { $0.hasSuffix(".pch") } ?? []
    }
}

@Suite struct PrecompiledHeaderTests {
    @Test(arguments: ["bpf", "x86_64-linux-gnu"])
    func sameObjectWithAndWithout(triple: String) throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        let plain = try compiler.compile(fixture.request(triple: triple, precompiled: false))
        let first = try compiler.compile(fixture.request(triple: triple))
        #expect(first.notes.contains { $0.hasPrefix("built precompiled header") })
        #expect(first.notes.contains { $0.hasPrefix("loaded precompiled header") })
        let second = try compiler.compile(fixture.request(triple: triple))
        #expect(!second.notes.contains { $0.hasPrefix("built precompiled header") })
        #expect(second.notes.contains { $0.hasPrefix("loaded precompiled header") })
        #expect(fixture.pchFiles.count == 1)
        #expect(first.elf == plain.elf)
        #expect(second.elf == plain.elf)
        // The headers the precompiled header stands for still count as read.
        #expect(second.dependencies.contains(fixture.headers + "/vmlinux.h"))
    }

    @Test func defineBeforeTheIncludesCompilesWithout() throws {
        let fixture = try PCHFixture()
        let source = "#define MY_LIMIT 3\n" + pchProbe
        let object = try builtWorker().compile(fixture.request(source))
        #expect(object.notes.contains("no precompiled header: #define comes before its first #include"))
        #expect(fixture.pchFiles.isEmpty)
        #expect(object.elf == (try builtWorker().compile(fixture.request(source, precompiled: false))).elf)
    }

    /// Another order of the same includes is another prefix: its own header, never the first one.
    @Test func includeOrderGetsItsOwnHeader() throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        _ = try compiler.compile(fixture.request())
        let reordered = pchProbe.replacingFirst("#include <bpf/bpf_core_read.h>\n#include <bpf/bpf_tracing.h>",
                                                with: "#include <bpf/bpf_tracing.h>\n#include <bpf/bpf_core_read.h>")
        #expect(reordered != pchProbe)
        let object = try compiler.compile(fixture.request(reordered))
        #expect(object.notes.contains { $0.hasPrefix("built precompiled header") })
        #expect(fixture.pchFiles.count == 2)
        #expect(object.elf == (try compiler.compile(fixture.request(reordered, precompiled: false))).elf)
    }

    /// A header edited after the precompiled header was built: clang refuses the stale file,
    /// the compile goes on without it and the next run builds a fresh one.
    @Test func staleHeaderFallsBack() throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        _ = try compiler.compile(fixture.request())
        let edited = fakeVmlinux.replacingFirst("int pid; int tgid;", with: "int pid; int flags; int tgid;")
        try FileSystem.writeAtomically(Array(edited.utf8), to: fixture.headers + "/vmlinux.h")
        let object = try compiler.compile(fixture.request())
        #expect(object.notes.contains { $0.contains("was unusable, compiled without it and removed it") })
        #expect(object.elf == (try compiler.compile(fixture.request(precompiled: false))).elf)
        let rebuilt = try compiler.compile(fixture.request())
        #expect(rebuilt.notes.contains { $0.hasPrefix("built precompiled header") })
        #expect(rebuilt.elf == object.elf)
    }

    @Test func damagedHeaderFallsBack() throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        _ = try compiler.compile(fixture.request())
        let pch = try #require(fixture.pchFiles.first)
        try FileSystem.writeAtomically(Array("not a precompiled header".utf8), to: fixture.settings.directory + "/" + pch)
        let object = try compiler.compile(fixture.request())
        #expect(object.notes.contains { $0.contains("was unusable") })
        #expect(object.elf == (try compiler.compile(fixture.request(precompiled: false))).elf)
    }

    /// The probe's own mistake is reported once, as a plain compile reports it.
    @Test func probeErrorIsNotRetried() throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        _ = try compiler.compile(fixture.request())
        let broken = pchProbe + "\nint broken(void) { return undeclared_thing; }\n"
        #expect {
            try compiler.compile(fixture.request(broken))
        } throws: { error in
            let message = (error as! CompileError).message
            return message.contains("probe.c:") && message.contains("undeclared_thing") && !message.contains("kprobe-run-virtual")
        }
    }

    @Test func concurrentFirstRunsBuildOnce() async throws {
        let fixture = try PCHFixture()
        let compiler = try builtWorker()
        let request = try fixture.request()
        let results = try await withThrowingTaskGroup(of: CompiledObject.self) { group in
            for _ in 0..<3 { group.addTask { try compiler.compile(request) } }
            var results: [CompiledObject] = []
            for try await result in group { results.append(result) }
            return results
        }
        let builds = results.filter { $0.notes.contains { $0.hasPrefix("built precompiled header") } }
        #expect(builds.count == 1)
        #expect(results.allSatisfy { $0.notes.contains { $0.hasPrefix("loaded precompiled header") } })
        #expect(Set(results.map(\.elf)).count == 1)
        #expect(fixture.pchFiles.count == 1)
    }
}

@Suite struct PrecompiledPrefixTests {
    func decide(_ source: String, directory: String = "/nonexistent") -> PrecompiledPrefix.Decision {
        PrecompiledPrefix.analyze(source: source, sourceDirectory: directory)
    }

    @Test func leadingIncludesAfterComments() {
        let source = """
            // SPDX-License-Identifier: GPL-2.0
            /* several
               lines */
            #include <linux/sched.h>   // tasks
            # include "vmlinux.h" /* types */
            #include <bpf/bpf_helpers.h>
            #define X 1
            #include <net/sock.h>
            int x;
            """
        #expect(decide(source) == .use(PrecompiledPrefix(
            text: "#include <linux/sched.h>\n#include \"vmlinux.h\"\n#include <bpf/bpf_helpers.h>\n", includeCount: 3)))
    }

    @Test func nothingBeforeTheFirstInclude() {
        #expect(decide("#define FOO 1\n#include <linux/sched.h>\n") == .skip(reason: "#define comes before its first #include"))
        #expect(decide("#undef FOO\n#include <linux/sched.h>\n") == .skip(reason: "#undef comes before its first #include"))
        #expect(decide("#ifdef FOO\n#include <linux/sched.h>\n#endif\n") == .skip(reason: "#ifdef comes before its first #include"))
        #expect(decide("int x;\n#include <linux/sched.h>\n") == .skip(reason: "it does not start with #include lines"))
        #expect(decide("#include MACRO_HEADER\n") == .skip(reason: "it does not start with #include lines"))
        #expect(decide("#include <linux/\\\nsched.h>\n") == .skip(reason: "it does not start with #include lines"))
    }

    @Test func includesOnlyProbeIsUsed() {
        #expect(decide("#include <a.h>\n#include <b.h>") == .use(PrecompiledPrefix(text: "#include <a.h>\n#include <b.h>\n", includeCount: 2)))
    }

    @Test func stopsAtTheProbesOwnHeader() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("mystruct.h", "struct mine { int a; };\n")
        let source = "#include <linux/sched.h>\n#include \"mystruct.h\"\n#include <linux/fs.h>\n"
        #expect(decide(source, directory: scratch.path) == .use(PrecompiledPrefix(text: "#include <linux/sched.h>\n", includeCount: 1)))
        #expect(decide("#include \"mystruct.h\"\n", directory: scratch.path) == .skip(reason: "\"mystruct.h\" is the probe's own header"))
        #expect(PrecompiledPrefix.sourceDirectory(of: "probe.c") == ".")
        #expect(PrecompiledPrefix.sourceDirectory(of: "bpf-examples/hello.c") == "bpf-examples")
        #expect(PrecompiledPrefix.sourceDirectory(of: "/hello.c") == "/")
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return self[..<range.lowerBound] + replacement + self[range.upperBound...]
    }
}
