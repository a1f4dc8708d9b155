import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Bad input gets a clear message and its own exit status, and leaves nothing behind.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct FailureTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        private func write(_ text: String, named name: String, in directory: ScratchDirectory) throws -> String {
            let path = directory.path + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        @Test func syntaxErrorExits3WithFileLineColumn() throws {
            let scratch = try ScratchDirectory()
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                SEC("tracepoint/syscalls/sys_enter_openat")
                int broken(void *ctx)
                {
                    return 0
                }
                """, named: "broken.c", in: scratch)
            let result = try Tool.run([probe, "-d", "1"], environment: environment)
            #expect(result.status == 3)
            #expect(result.stderr.contains("broken.c:7:13: error:"), "\(result.stderr)")
            #expect(!result.stderr.contains("/kprobe-run-it-") || result.stderr.contains(probe), "internal path leaked: \(result.stderr)")
        }

        @Test func crashingWorkerIsACompileErrorNotACrash() throws {
            // A file in the repository, not one written now: a script written and executed at
            // once can fail with ETXTBSY while another thread forks.
            let worker = Tool.packageRoot + "/Tests/fixtures/crashing-worker"
            let result = try Tool.run([Tool.example("hello.c"), "-d", "1"], environment: environment.merging(["KPROBE_RUN_CC": worker]) { $1 })
            #expect(result.status == 3, "\(result.stderr)")
            #expect(!result.uncaughtSignal)
            #expect(result.stderr.lowercased().contains("worker"), "\(result.stderr)")
        }

        @Test func missingProbeIsAUsageError() throws {
            let result = try Tool.run(["/nonexistent/probe.c"])
            #expect(result.status == 2)
            #expect(result.stderr.contains("/nonexistent/probe.c"))
        }

        @Test func badAttachSpecIsAUsageError() throws {
            let result = try Tool.run([Tool.example("hello.c"), "-a", "kprobe-vfs_read"])
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("kprobe:SYM=FUNC"), "\(result.stderr)")
        }

        @Test func rejectedProgramExits5WithVerifierLog() throws {
            let scratch = try ScratchDirectory()
            // Reads through an unchecked map value: the verifier refuses the NULL dereference.
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                struct {
                    __uint(type, BPF_MAP_TYPE_HASH);
                    __uint(max_entries, 16);
                    __type(key, u32);
                    __type(value, u64);
                } counts SEC(".maps");

                SEC("tracepoint/syscalls/sys_enter_openat")
                int unchecked(void *ctx)
                {
                    u32 key = 0;
                    u64 *value = bpf_map_lookup_elem(&counts, &key);
                    return *value;
                }

                char LICENSE[] SEC("license") = "GPL";
                """, named: "unchecked.c", in: scratch)
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([probe, "-d", "1"], environment: environment)
            }
            #expect(result.status == 5, "\(result.stderr)")
            #expect(result.stderr.contains("invalid mem access") || result.stderr.contains("map_value_or_null"), "\(result.stderr)")
            #expect(left.isEmpty)
        }

        @Test func missingTracepointExits6() throws {
            let scratch = try ScratchDirectory()
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                SEC("tracepoint/nosuchcategory/nosuchevent")
                int nowhere(void *ctx) { return 0; }

                char LICENSE[] SEC("license") = "GPL";
                """, named: "nowhere.c", in: scratch)
            let result = try Tool.run([probe, "-d", "1"], environment: environment)
            #expect(result.status == 6, "\(result.stderr)")
            #expect(result.stderr.contains("nosuchcategory"), "\(result.stderr)")
        }
    }
}
