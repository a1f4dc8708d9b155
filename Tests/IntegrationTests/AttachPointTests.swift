import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Wildcards in --attach, objects where nothing attaches, and -l, against this machine's
    /// tracefs (tracepoints; it has no kprobes).
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct AttachPointTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        /// The tracepoints available_events lists for a category and an event prefix.
        static func tracepoints(_ category: String, prefix: String) throws -> [String] {
            // tracefs files report a size of 0, so they are read to their end.
            let events = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/sys/kernel/tracing/available_events"))
            return String(decoding: events.readDataToEndOfFile(), as: UTF8.self)
                .split(separator: "\n").map(String.init)
                .filter { $0.hasPrefix("\(category):\(prefix)") }
        }

        /// funccount-style: one program counting at every sys_enter_open* tracepoint.
        @Test func tracepointWildcardAttachesAtEveryMatch() throws {
            let scratch = try ScratchDirectory()
            let probe = try scratch.write(named: "count.bpf.c", """
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                struct {
                    __uint(type, BPF_MAP_TYPE_ARRAY);
                    __uint(max_entries, 1);
                    __type(key, __u32);
                    __type(value, __u64);
                } opens SEC(".maps");

                SEC("tracepoint")
                int count_opens(void *ctx)
                {
                    __u32 zero = 0;
                    __u64 *count = bpf_map_lookup_elem(&opens, &zero);
                    if (count)
                        __sync_fetch_and_add(count, 1);
                    return 0;
                }

                char LICENSE[] SEC("license") = "GPL";
                """)
            let expected = try Self.tracepoints("syscalls", prefix: "sys_enter_open")
            try #require(expected.count > 1)
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([probe, "-v", "-d", "3", "-a", "tracepoint:syscalls:sys_enter_open*=count_opens"], environment: environment) {
                    _ = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)
                }
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("at \(expected.count) of \(expected.count) match(es)"), "\(result.stderr)")
            // The map's one entry counts the opens the test made.
            let counts = result.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
            #expect(counts.contains { $0 > 0 }, "stdout: \(result.stdout)")
            #expect(left.isEmpty, "programs left loaded: \(left)")

            let none = try Tool.run([probe, "-d", "1", "-a", "tracepoint:syscalls:sys_enter_no_such_call*=count_opens"], environment: environment)
            #expect(none.status == 6, "\(none.stderr)")
            #expect(none.stderr.contains("no tracepoint in available_events matches 'syscalls:sys_enter_no_such_call*'"), "\(none.stderr)")
            #expect(none.stderr.contains("kprobe-run -l 'tracepoint:syscalls:*'"), "\(none.stderr)")
        }

        /// An object whose programs nothing attaches (no SEC that says where, no --attach) ends
        /// with exit 6 naming them and the --attach syntax instead of printing empty maps.
        @Test func nothingAttachedIsAnError() throws {
            let scratch = try ScratchDirectory()
            let probe = try scratch.write(named: "filter.bpf.c", """
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                SEC("socket")
                int keep_all(struct __sk_buff *skb)
                {
                    return skb->len;
                }

                char LICENSE[] SEC("license") = "GPL";
                """)
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([probe, "-d", "1"], environment: environment)
            }
            #expect(result.status == 6, "\(result.stderr)")
            #expect(result.stderr.contains("'keep_all' (SEC(\"socket\"))"), "\(result.stderr)")
            #expect(result.stderr.contains("--attach kprobe:SYMBOL=keep_all"), "\(result.stderr)")
            #expect(result.stderr.contains("usdt:PATH:PROVIDER:NAME=FUNC"), "\(result.stderr)")
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }

        @Test func listFindsTracepointsLikeAvailableEvents() throws {
            let result = try Tool.run(["-l", "tracepoint:syscalls:sys_enter_open*"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let expected = try Self.tracepoints("syscalls", prefix: "sys_enter_open").map { "tracepoint:" + $0 }.sorted()
            #expect(result.stdout.split(separator: "\n").map(String.init) == expected)

            let verbose = try Tool.run(["--list", "-v", "tracepoint:sched:sched_switch"], environment: environment)
            #expect(verbose.status == 0, "\(verbose.stderr)")
            #expect(verbose.stdout.hasPrefix("tracepoint:sched:sched_switch\n"), "\(verbose.stdout)")
            #expect(verbose.stdout.contains("    char prev_comm[16]\n"), "\(verbose.stdout)")
            #expect(!verbose.stdout.contains("common_"), "\(verbose.stdout)")
        }

        @Test func listOtherKinds() throws {
            let uprobes = try Tool.run(["-l", "uprobe:/bin/bash:readline"], environment: environment)
            #expect(uprobes.status == 0, "\(uprobes.stderr)")
            #expect(uprobes.stdout == "uprobe:/bin/bash:readline\n", "\(uprobes.stdout)")
            let software = try Tool.run(["-l", "software:cpu-*"], environment: environment)
            #expect(software.stdout == "software:cpu-clock\nsoftware:cpu-migrations\n", "\(software.stdout)")
            let raw = try Tool.run(["-l", "raw_tracepoint:sched_switch"], environment: environment)
            #expect(raw.stdout == "raw_tracepoint:sched_switch\n", "\(raw.stdout)")
            if FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") {
                let fentry = try Tool.run(["-l", "fentry:vfs_read"], environment: environment)
                #expect(fentry.stdout == "fentry:vfs_read\n", "\(fentry.stdout) \(fentry.stderr)")
            }
            // This kernel has no kprobes: asked for by name, that is the answer.
            if !FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/kprobe"),
               !FileManager.default.fileExists(atPath: "/sys/kernel/tracing/kprobe_events") {
                let kprobes = try Tool.run(["-l", "kprobe:vfs_*"], environment: environment)
                #expect(kprobes.status == 6, "\(kprobes.stderr)")
                #expect(kprobes.stderr.contains("kprobes are not supported by this kernel"), "\(kprobes.stderr)")
            }
            let unknown = try Tool.run(["-l", "bogus:x"], environment: environment)
            #expect(unknown.status == 2, "\(unknown.stderr)")
        }
    }
}
