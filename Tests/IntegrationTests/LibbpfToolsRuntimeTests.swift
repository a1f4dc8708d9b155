import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Issue 12's runtime side with probes written the way libbpf-tools writes them (no userspace
    /// half): `--set` parameters, maps sized by userspace, twin programs, `info`, variable-length
    /// records and histograms labelled by the other fields of their value.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct LibbpfToolsRuntimeTests {
        static let scratch = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"] }

        func probe(_ name: String, _ source: String) throws -> String {
            let path = Self.scratch.path + "/" + name
            try source.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        static let header = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            #include <bpf/bpf_tracing.h>

            """

        /// openat calls per process, optionally of one process only; the map has no max_entries.
        static let opens = header + """
            const volatile pid_t targ_pid = 0;
            const volatile char targ_comm[16] = {};
            struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); __type(value, u64); } opens SEC(".maps");
            SEC("tracepoint/syscalls/sys_enter_openat")
            int count_open(void *ctx) {
                u32 pid = bpf_get_current_pid_tgid() >> 32;
                if (targ_pid && pid != targ_pid) return 0;
                u64 one = 1, *count = bpf_map_lookup_elem(&opens, &pid);
                if (count) __sync_fetch_and_add(count, 1); else bpf_map_update_elem(&opens, &pid, &one, BPF_ANY);
                return 0;
            }
            char LICENSE[] SEC("license") = "GPL";
            """

        @Test func setFiltersByPidAndChecksTypes() throws {
            let source = try probe("opens.bpf.c", Self.opens)
            let shell = Process()
            shell.executableURL = URL(fileURLWithPath: "/bin/sh")
            // The shell itself opens the file (a redirection of a builtin), every 50 ms until killed.
            shell.arguments = ["-c", "while :; do exec 3</etc/hostname; sleep 0.05; done"]
            try shell.run()
            defer {
                shell.terminate()
                shell.waitUntilExit()
            }
            let pid = shell.processIdentifier
            let result = try Tool.run([source, "--set", "targ_pid=\(pid)", "-d", "3"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let rows = result.stdout.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ") }
            #expect(rows.map { $0.first.map(String.init) } == ["\(pid)"], "\(result.stdout)")
            #expect((rows.first?.last).flatMap { Int($0) } ?? 0 > 0, "\(result.stdout)")

            for (setting, message) in [("targ_pid=many", "targ_pid is pid_t: expected an integer"),
                                       ("targ_pid=4294967296", "out of range for a signed 32-bit integer"),
                                       ("targ_comm=a-name-longer-than-15", "at most 15 bytes fit"),
                                       ("no_such=1", "it has: targ_pid, targ_comm")] {
                let bad = try Tool.run([source, "--set", setting, "-d", "1"], environment: environment)
                #expect(bad.status == 2, "\(setting): \(bad.stderr)")
                #expect(bad.stderr.contains(message), "\(setting): \(bad.stderr)")
            }

            let info = try Tool.run(["info", source, "--map-size", "opens=99"], environment: environment)
            #expect(info.status == 0, "\(info.stderr)")
            #expect(info.stdout.contains("targ_comm  char[16]"), "\(info.stdout)")
            #expect(info.stdout.contains("max_entries 99"), "\(info.stdout)")
            let defaults = try Tool.run(["info", source], environment: environment)
            #expect(defaults.stdout.contains("max_entries 10240 (default)"), "\(defaults.stdout)")
        }

        /// The same exec seen by three twins, the same function by an fentry and a kprobe twin,
        /// and an fentry program on a placeholder target.
        static let twins = header + """
            struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u32); __type(value, u64); } seen SEC(".maps");
            static void see(u32 which) {
                u64 one = 1, *count = bpf_map_lookup_elem(&seen, &which);
                if (count) __sync_fetch_and_add(count, 1); else bpf_map_update_elem(&seen, &which, &one, BPF_ANY);
            }
            SEC("tp_btf/sched_process_exec") int BPF_PROG(exec_btf) { see(1); return 0; }
            SEC("raw_tp/sched_process_exec") int BPF_PROG(exec_raw) { see(2); return 0; }
            SEC("tracepoint/sched/sched_process_exec") int exec_tp(void *ctx) { see(3); return 0; }
            SEC("fentry/do_nanosleep") int BPF_PROG(nap_fentry) { see(4); return 0; }
            SEC("kprobe/do_nanosleep") int BPF_KPROBE(nap_kprobe) { see(5); return 0; }
            SEC("fentry/dummy_file_read") int BPF_PROG(read_placeholder) { see(6); return 0; }
            char LICENSE[] SEC("license") = "GPL";
            """

        @Test func twinsLoadOnlyTheBestVariant() throws {
            let source = try probe("twins.bpf.c", Self.twins)
            let object = Self.scratch.path + "/twins.o"
            let verify = try Tool.run(["compile", "--verify", "-v", source, "-o", object], environment: environment)
            #expect(verify.status == 0, "\(verify.stderr)")
            #expect(verify.stderr.contains("not loading 'exec_raw'") && verify.stderr.contains("not loading 'exec_tp'"), "\(verify.stderr)")
            #expect(verify.stderr.contains("not loading 'read_placeholder'"), "\(verify.stderr)")
            #expect(verify.stderr.contains("accepted 2 program(s): exec_btf, nap_kprobe"), "\(verify.stderr)")

            // Only the tp_btf twin counts the exec (kprobes do not attach here: skip that twin).
            let best = try Tool.run([object, "--skip", "nap_kprobe", "--skip", "nap_fentry", "-c", "true", "-d", "5"], environment: environment)
            #expect(best.status == 0, "\(best.stderr)")
            let keys = best.stdout.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: " ").first }
            #expect(keys == ["1"], "\(best.stdout)")
            let chosen = try Tool.run([object, "--only", "exec_tp", "-c", "true", "-d", "5"], environment: environment)
            #expect(chosen.stdout.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: " ").first } == ["3"], "\(chosen.stdout)")

            // Every failing program is reported, not only the first.
            let all = try Tool.run(["compile", "--verify", source, "-o", object, "--only", "nap_fentry", "--only", "exec_raw",
                                    "--only", "read_placeholder"], environment: environment)
            #expect(all.status != 0)
            #expect(all.stderr.contains("2 of 3 program(s) failed to load") && all.stderr.contains("the verifier accepted: exec_raw"), "\(all.stderr)")
            let unknown = try Tool.run([object, "--only", "nope"], environment: environment)
            #expect(unknown.status == 2 && unknown.stderr.contains("no program named 'nope'"), "\(unknown.stderr)")
        }

        /// execsnoop's shape: a record sent only as long as its argument strings.
        static let execs = header + """
            struct event { u32 pid; unsigned int args_size; char comm[16]; char args[256]; };
            const struct event *unused_event __attribute__((unused));
            struct { __uint(type, BPF_MAP_TYPE_RINGBUF); } events SEC(".maps");
            struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct event); } heap SEC(".maps");
            struct hist { u32 slots[20]; char comm[16]; };
            static struct hist zero;
            struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, struct hist); } sizes SEC(".maps");
            SEC("tracepoint/syscalls/sys_enter_execve")
            int on_exec(struct trace_event_raw_sys_enter *ctx) {
                u32 key = 0;
                struct event *e = bpf_map_lookup_elem(&heap, &key);
                if (!e) return 0;
                e->pid = bpf_get_current_pid_tgid() >> 32;
                bpf_get_current_comm(e->comm, sizeof(e->comm));
                const char **argv = (const char **)ctx->args[1];
                const char *arg = 0;
                bpf_probe_read_user(&arg, sizeof(arg), &argv[0]);
                int first = bpf_probe_read_user_str(e->args, 128, arg);
                if (first <= 0) return 0;
                e->args_size = first;
                arg = 0;
                bpf_probe_read_user(&arg, sizeof(arg), &argv[1]);
                if (arg) {
                    int second = bpf_probe_read_user_str(&e->args[first & 127], 128, arg);
                    if (second > 0) e->args_size += second;
                }
                u32 size = __builtin_offsetof(struct event, args) + (e->args_size & 255);
                if (size <= sizeof(*e)) bpf_ringbuf_output(&events, e, size, 0);
                u32 pid = e->pid;
                struct hist *h = bpf_map_lookup_elem(&sizes, &pid);
                if (!h) {
                    bpf_map_update_elem(&sizes, &pid, &zero, BPF_NOEXIST);
                    h = bpf_map_lookup_elem(&sizes, &pid);
                    if (!h) return 0;
                    __builtin_memcpy(h->comm, e->comm, sizeof(h->comm));
                }
                __sync_fetch_and_add(&h->slots[first < 16 ? 3 : 4], 1);
                return 0;
            }
            char LICENSE[] SEC("license") = "GPL";
            """

        @Test func variableLengthRecordsAndLabelledHistograms() throws {
            let source = try probe("execs.bpf.c", Self.execs)
            let marker = "kprobe-run-marker-\(UUID().uuidString.prefix(8))"
            let result = try Tool.run([source, "-c", "/bin/echo \(marker)", "-d", "5"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n")
            #expect(lines.contains { $0.hasSuffix("args=/bin/echo \(marker)") }, "\(result.stdout)")
            // The per-CPU scratch array of the record type is not data.
            #expect(!lines.contains { $0.hasPrefix("heap") }, "\(result.stdout)")
            #expect(lines.contains { $0.wholeMatch(of: /sizes \[\d+\] comm=\S+:/) != nil }, "\(result.stdout)")
        }
    }
}
