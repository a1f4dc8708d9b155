import CLibBPF
import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Issue 13's event path against this machine's kernel: every record of a ring buffer and of a
    /// perf buffer arrives once (a ring buffer's in order), as valid JSON and as text, and Ctrl-C leaves nothing
    /// attached.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct EventStreamTests {
        static let scratch = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"] }
        static let program = "kprt_evseq"
        /// One record to each buffer per getppid() of the followed process, numbered.
        static let probe = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            struct event { u32 pid; u32 seq; u64 ts; char comm[16]; };
            const struct event *unused_event __attribute__((unused));
            struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } ring SEC(".maps");
            struct {
                __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
                __uint(key_size, sizeof(u32));
                __uint(value_size, sizeof(u32));
            } perf SEC(".maps");
            const volatile int kprobe_run_pid = 0;
            u64 ring_sent = 0, perf_sent = 0, dropped = 0;
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int \(program)(void *ctx)
            {
                u32 pid = bpf_get_current_pid_tgid() >> 32;
                if (pid != kprobe_run_pid)
                    return 0;
                struct event e = { .pid = pid, .ts = bpf_ktime_get_ns() };
                bpf_get_current_comm(e.comm, sizeof(e.comm));
                e.seq = __sync_fetch_and_add(&perf_sent, 1);
                if (bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &e, sizeof(e)))
                    __sync_fetch_and_add(&dropped, 1);
                e.seq = __sync_fetch_and_add(&ring_sent, 1);
                if (bpf_ringbuf_output(&ring, &e, sizeof(e), 0))
                    __sync_fetch_and_add(&dropped, 1);
                return 0;
            }
            char LICENSE[] SEC("license") = "GPL";
            """
        static let calls = 20_000

        /// Runs the probe on this test process (-p) for `format`: `calls` getppid() in bursts of
        /// 1,000 every 100 ms once attached (10,000 a second), then SIGINT. Returns the result and
        /// the programs of ours still loaded after it.
        func run(format: String) throws -> (Tool.Result, [UInt32]) {
            let source = try Self.scratch.write("evseq.bpf.c", Self.probe)
            var made = 0
            let result = try Tool.run(["--format", format, "-v", "-p", String(getpid()), source], completeEnvironment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
                                      timeout: 120, interval: 0.1) { process, collected in
                guard collected.strings.1.contains("running until") || made > 0 else { return }
                if made < Self.calls {
                    for _ in 0..<1_000 { _ = getppid() }
                    made += 1_000
                } else {
                    kill(process.processIdentifier, SIGINT)
                }
            }
            return (result, LoadedPrograms.named(Self.program))
        }

        /// The `seq` of every record of each map, in the order printed.
        static func sequences(_ records: [(map: String, seq: Int)]) -> [String: [Int]] {
            Dictionary(grouping: records, by: \.map).mapValues { $0.map(\.seq) }
        }

        /// Records 0..<count, each once: in order for the ring buffer, in any order for the perf
        /// buffer (one buffer per CPU, read CPU by CPU, and the test process may change CPUs).
        static func complete(_ sequence: [Int]?, count: Int, map: String) -> Bool {
            guard let sequence else { return false }
            return (map == "ring" ? sequence : sequence.sorted()) == Array(0..<count)
        }

        @Test func jsonRecordsArriveOnceInOrder() throws {
            let (result, left) = try run(format: "json")
            #expect(result.status == 0, "\(result.stderr)")
            var records: [(map: String, seq: Int)] = []
            var globals: [String: Int] = [:]
            for line in result.stdout.split(separator: "\n") {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
                switch object["type"] as? String {
                case "event":
                    let data = try #require(object["data"] as? [String: Any])
                    #expect(data["comm"] is String && data["pid"] as? Int == Int(getpid()), "\(line)")
                    records.append((try #require(object["map"] as? String), try #require(data["seq"] as? Int)))
                case "map":
                    for entry in object["entries"] as? [[String: Any]] ?? [] {
                        if let key = entry["key"] as? String, let value = entry["value"] as? Int { globals[key] = value }
                    }
                default: break
                }
            }
            #expect(globals["dropped"] == nil, "the kernel dropped records: \(globals)")
            let sequences = Self.sequences(records)
            for map in ["ring", "perf"] {
                // The program's own count: the kernel may skip a call's program now and then.
                let sent = try #require(globals[map + "_sent"], "\(globals)")
                #expect(sent > Self.calls / 2)
                #expect(Self.complete(sequences[map], count: sent, map: map), "\(map): \(sequences[map]?.count ?? 0) of \(sent) records, or some twice or out of order")
            }
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }

        @Test func textRecordsArriveOnceInOrder() throws {
            let (result, left) = try run(format: "text")
            #expect(result.status == 0, "\(result.stderr)")
            var records: [(map: String, seq: Int)] = []
            for line in result.stdout.split(separator: "\n") where line.contains(" comm=") {
                let map = String(try #require(line.split(separator: ":").first))
                let seq = try #require(line.split(separator: " ").first { $0.hasPrefix("seq=") }.flatMap { Int($0.dropFirst(4)) })
                records.append((map, seq))
            }
            let sequences = Self.sequences(records)
            // The globals' rows: `  ring_sent  20000`.
            var globals: [String: Int] = [:]
            for line in result.stdout.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2, let value = Int(fields[1]) { globals[String(fields[0])] = value }
            }
            for map in ["ring", "perf"] {
                let sent = try #require(globals[map + "_sent"], "\(result.stdout.suffix(300))")
                #expect(sent > Self.calls / 2)
                #expect(Self.complete(sequences[map], count: sent, map: map), "\(map): \(sequences[map]?.count ?? 0) of \(sent) records, or some twice or out of order")
            }
            #expect(!result.stdout.contains("dropped"), "the kernel dropped records: \(result.stdout.suffix(300))")
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }
    }
}
