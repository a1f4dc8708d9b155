import Foundation
import Testing
import TestSupport

extension HostKernel.LibbpfToolsRuntimeTests {
    // Issue 12: libbpf-style maps print as libbpf-tools' own userspace prints them, from facts the
    // compiler records about how the probe fills them: linear vs log2 `slots` and their unit,
    // catch-all keys, syscall-number keys (and the `--set` flag that turns them into pids), maps
    // of operations in flight.

    /// dd under a name of its own: a comm that nothing else on the machine has.
    static func writer() throws -> String {
        let path = scratch.path + "/kprwriter"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/bin/dd")
        }
        return path
    }

    static let commHeader = header + """
        const volatile char targ_comm[16] = "kprwriter";

        static __always_inline bool comm_matches(void) {
            char comm[16];
            bpf_get_current_comm(comm, sizeof(comm));
            for (int i = 0; i < 16 && targ_comm[i]; i++)
                if (comm[i] != targ_comm[i]) return false;
            return true;
        }

        """

    /// Write sizes twice: by log2 (a helper named like bits.bpf.h's, through a variable) into a
    /// map, and by thousands of bytes (a plain number, cpufreq's `freq / STEP`) into a global
    /// array (runqlen's shape).
    static let sizes = commHeader + """
        static __always_inline u64 log2_of(u64 v) {
            u64 r = 0;
            for (int i = 0; i < 63 && v > 1; i++) { v >>= 1; r++; }
            return r;
        }
        struct log_hist { u32 slots[24]; };
        struct linear_hist { u32 slots[16]; };
        struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct log_hist); } by_log SEC(".maps");
        struct linear_hist by_thousands[2] = {};
        // funclatency's shape: a global integer array indexed by a log2 is a histogram; one
        // indexed by a plain number (softirqs' `counts[vec]`) stays counters.
        __u32 log_sizes[24] = {};
        // An index from a function of the probe that makes no log2 call says nothing: the
        // default (log2) stands.
        struct opaque_hist { u32 slots[4]; };
        struct opaque_hist by_bucket = {};
        static __noinline u32 bucket_of(u64 bytes) { return bytes > 2000 ? 2 : 1; }
        __u64 by_fd[4] = {};
        // compat.bpf.h's scratch space: bytes without a type, not data.
        struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __uint(key_size, 4); __uint(value_size, 64); } heap SEC(".maps");
        // runqlat's shape: one histogram per process, or one for all under key -1.
        const volatile bool per_process = false;
        struct labelled_hist { u32 slots[4]; char comm[16]; };
        static struct labelled_hist empty;
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, struct labelled_hist); } by_process SEC(".maps");

        SEC("tracepoint/syscalls/sys_enter_write")
        int count_write(struct syscall_trace_enter *ctx) {
            if (!comm_matches()) return 0;
            u64 bytes = ctx->args[2], slot;
            u32 zero = 0;
            struct log_hist *h = bpf_map_lookup_elem(&by_log, &zero);
            if (h) {
                slot = log2_of(bytes);
                if (slot >= 24) slot = 23;
                __sync_fetch_and_add(&h->slots[slot], 1);
                __sync_fetch_and_add(&log_sizes[slot], 1);
            }
            u64 fd = ctx->args[0];
            if (fd < 4) __sync_fetch_and_add(&by_fd[fd], 1);
            u32 bucket = bucket_of(bytes) & 3;
            __sync_fetch_and_add(&by_bucket.slots[bucket], 1);
            u64 thousands = bytes / 1000;
            if (thousands >= 16) thousands = 15;
            // runqlen's `hists[cpu]`: index 0 stands for all unless a flag spreads them out.
            u32 index = 0;
            if (per_process) index = 1;
            __sync_fetch_and_add(&by_thousands[index].slots[thousands], 1);
            u32 key = -1;
            if (per_process) key = bpf_get_current_pid_tgid() >> 32;
            struct labelled_hist *p = bpf_map_lookup_elem(&by_process, &key);
            if (!p) {
                bpf_map_update_elem(&by_process, &key, &empty, BPF_NOEXIST);
                p = bpf_map_lookup_elem(&by_process, &key);
                if (!p) return 0;
                bpf_get_current_comm(p->comm, sizeof(p->comm));
            }
            __sync_fetch_and_add(&p->slots[0], 1);
            return 0;
        }
        char LICENSE[] SEC("license") = "GPL";
        """

    @Test func linearAndLog2SlotsPrintAsLibbpfTools() throws {
        let source = try probe("output-sizes.bpf.c", Self.sizes)
        let command = "\(try Self.writer()) if=/dev/zero of=/dev/null bs=3000 count=7 status=none"
        let result = try Tool.run([source, "-c", command, "-d", "20"], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // print_log2_hist: rows from 0 -> 1 up to the last non-empty one.
        let log = try #require(lines.firstIndex(of: "by_log:"), "\(result.stdout)")
        #expect(lines[log + 1] == "     value               : count    distribution", "\(result.stdout)")
        #expect(lines[log + 2].hasPrefix("         0 -> 1          : 0 "), "\(result.stdout)")
        #expect(lines.contains("      2048 -> 4095       : 7        |****************************************|"), "\(result.stdout)")
        // print_linear_hist: only the non-empty row, labelled by the value it starts at (slot 3
        // of `bytes / 1000` stands for 3000).
        let linear = try #require(lines.firstIndex(of: "by_thousands:"), "\(result.stdout)")
        #expect(Array(lines[(linear + 1)...(linear + 2)]) == [
            "     value         : count     distribution",
            "        3000       : 7        |****************************************|",
        ], "\(result.stdout)")
        #expect(!lines.contains { $0.hasPrefix("heap") }, "\(result.stdout)")
        let array = try #require(lines.firstIndex(of: "log_sizes:"), "\(result.stdout)")
        #expect(lines[(array + 1)...].first { $0.contains("2048 -> 4095") }?.hasSuffix(": 7        |****************************************|") == true,
                "\(result.stdout)")
        #expect(lines.contains { $0.wholeMatch(of: /\s+by_fd\s+\[0,7,0,0\]/) != nil }, "\(result.stdout)")
        let opaque = try #require(lines.firstIndex(of: "by_bucket:"), "\(result.stdout)")
        #expect(lines[opaque + 4].hasPrefix("         4 -> 7          : 7 "), "\(result.stdout)")
        // The catch-all key prints neither itself nor the comm of whoever came first.
        #expect(lines.contains("by_process:") && !lines.contains { $0.hasPrefix("by_process [") }, "\(result.stdout)")
        let perProcess = try Tool.run([source, "--set", "per_process=1", "-c", command, "-d", "20"], environment: environment)
        #expect(perProcess.stdout.split(separator: "\n").contains { $0.wholeMatch(of: /by_process \[\d+\] comm=kprwriter:/) != nil },
                "\(perProcess.stdout)")
        #expect(perProcess.stdout.contains("\nby_thousands [1]:\n"), "\(perProcess.stdout)")
    }

    /// syscount's shape: a count per syscall number, or per process when a flag says so.
    static let syscalls = commHeader + """
        const volatile bool by_process = false;
        struct data_t { u64 count; };
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, u32); __type(value, struct data_t); } calls SEC(".maps");
        // Operations in flight: a start time per thread, and a record kept until the call ends.
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, u32); __type(value, u64); } start SEC(".maps");
        struct pending_t { u64 id; };
        // Latencies by log2 in microseconds, or milliseconds when asked (runqlat's targ_ms).
        const volatile bool in_ms = false;
        struct latency_hist { u32 slots[27]; };
        struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct latency_hist); } latency SEC(".maps");
        static __always_inline u64 log2l(u64 v) {
            u64 r = 0;
            for (int i = 0; i < 63 && v > 1; i++) { v >>= 1; r++; }
            return r;
        }
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, u32); __type(value, struct pending_t); } pending SEC(".maps");

        SEC("tracepoint/raw_syscalls/sys_enter")
        int note_enter(struct trace_event_raw_sys_enter *args) {
            if (!comm_matches()) return 0;
            u32 tid = (u32)bpf_get_current_pid_tgid();
            u64 ts = bpf_ktime_get_ns();
            struct pending_t call = { .id = args->id };
            bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
            bpf_map_update_elem(&pending, &tid, &call, BPF_ANY);
            return 0;
        }

        SEC("tracepoint/raw_syscalls/sys_exit")
        int count_exit(struct trace_event_raw_sys_exit *args) {
            if (!comm_matches()) return 0;
            u32 tid = (u32)bpf_get_current_pid_tgid();
            // Only calls seen entering count.
            if (!bpf_map_lookup_elem(&pending, &tid)) return 0;
            bpf_map_delete_elem(&pending, &tid);
            u64 *started = bpf_map_lookup_elem(&start, &tid);
            u32 first = 0;
            struct latency_hist *lat = bpf_map_lookup_elem(&latency, &first);
            if (started && lat) {
                u64 delta = bpf_ktime_get_ns() - *started;
                if (in_ms) delta /= 1000000U;
                else delta /= 1000U;
                u64 slot = log2l(delta);
                if (slot >= 27) slot = 26;
                __sync_fetch_and_add(&lat->slots[slot], 1);
            }
            u32 key = by_process ? (u32)(bpf_get_current_pid_tgid() >> 32) : (u32)args->id;
            struct data_t zero = {}, *value = bpf_map_lookup_elem(&calls, &key);
            if (!value) {
                bpf_map_update_elem(&calls, &key, &zero, BPF_NOEXIST);
                value = bpf_map_lookup_elem(&calls, &key);
                if (!value) return 0;
            }
            __sync_fetch_and_add(&value->count, 1);
            return 0;
        }
        char LICENSE[] SEC("license") = "GPL";
        """

    /// The rows of the table `map` in text output, split into cells (the header row first).
    static func table(_ map: String, in output: String) -> [[String]] {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: Substring(map + ":")) else { return [] }
        return lines[(start + 1)...].prefix { $0.hasPrefix("  ") }.map { $0.split(separator: " ").map(String.init) }
    }

    @Test func syscallKeysPrintByNameUnlessSetTurnsThemIntoPids() throws {
        let source = try probe("output-syscalls.bpf.c", Self.syscalls)
        let command = "\(try Self.writer()) if=/dev/zero of=/dev/null bs=1 count=50 status=none"
        let byName = try Tool.run([source, "-c", command, "-d", "20"], environment: environment)
        #expect(byName.status == 0, "\(byName.stderr)")
        let rows = Self.table("calls", in: byName.stdout)
        #expect(rows.first == ["syscall", "count"], "\(byName.stdout)")
        // dd's 50 one-byte writes and reads, the largest counts, by name.
        #expect(Set(rows.dropFirst().prefix(2).compactMap(\.first)) == ["read", "write"], "\(byName.stdout)")
        #expect(rows.contains { $0.first == "write" && Int($0.last ?? "") ?? 0 >= 50 }, "\(byName.stdout)")
        // The exit_group call that never returns stays in both maps, which do not print.
        #expect(!byName.stdout.contains("start:") && !byName.stdout.contains("pending:"), "\(byName.stdout)")
        #expect(byName.stdout.contains("latency:\n     usecs               : count    distribution\n"), "\(byName.stdout)")

        let byProcess = try Tool.run([source, "--set", "by_process=true", "--set", "in_ms=1", "-c", command, "-d", "20"],
                                     environment: environment)
        #expect(byProcess.status == 0, "\(byProcess.stderr)")
        let processRows = Self.table("calls", in: byProcess.stdout)
        #expect(processRows.first == ["key", "count"], "\(byProcess.stdout)")
        #expect(processRows.count == 2 && Int(processRows[1][0]) != nil, "one pid: \(byProcess.stdout)")
        #expect(byProcess.stdout.contains("latency:\n     msecs               : count    distribution\n"), "\(byProcess.stdout)")
    }

    /// `--clear` empties what prints, not the operations in flight: a sleep that spans an
    /// interval still counts when it returns.
    @Test func clearKeepsOperationsInFlight() throws {
        let source = try probe("output-syscalls.bpf.c", Self.syscalls)
        let sleeper = Self.scratch.path + "/kprsleeper"
        if !FileManager.default.fileExists(atPath: sleeper) {
            try FileManager.default.createSymbolicLink(atPath: sleeper, withDestinationPath: "/bin/sleep")
        }
        let result = try Tool.run([source, "--set", "targ_comm=kprsleeper", "-c", "\(sleeper) 1.6", "-i", "1", "--clear", "-d", "20"],
                                  environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        let last = result.stdout.components(separatedBy: "calls:").last ?? ""
        #expect(last.split(separator: "\n").contains { $0.contains("nanosleep") }, "\(result.stdout)")
    }

    /// biolatency -D's shape: a key field computed from a disk's major and minor numbers.
    static let disks = header + """
        #include <bpf/bpf_core_read.h>
        struct disk_key { u32 dev; };
        struct disk_hist { u32 slots[4]; };
        static struct disk_hist none;
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, struct disk_key); __type(value, struct disk_hist); } by_disk SEC(".maps");

        SEC("tp_btf/block_rq_issue")
        int BPF_PROG(on_issue, struct request *rq) {
            struct disk_key key = {};
            struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
            key.dev = disk ? (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor) : 0;
            struct disk_hist *h = bpf_map_lookup_elem(&by_disk, &key);
            if (!h) {
                bpf_map_update_elem(&by_disk, &key, &none, BPF_NOEXIST);
                h = bpf_map_lookup_elem(&by_disk, &key);
                if (!h) return 0;
            }
            __sync_fetch_and_add(&h->slots[0], 1);
            return 0;
        }
        char LICENSE[] SEC("license") = "GPL";
        """

    @Test func diskKeysPrintByDeviceName() throws {
        let source = try probe("output-disks.bpf.c", Self.disks)
        let file = Self.scratch.path + "/direct-writes"
        let command = "dd if=/dev/zero of=\(file) bs=64k count=20 oflag=direct,sync status=none"
        let result = try Tool.run([source, "-c", command, "-d", "20"], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        // Where the scratch directory is on no block device (tmpfs), there is nothing to name.
        let titles = result.stdout.split(separator: "\n").filter { $0.hasPrefix("by_disk [") }
        let devices = Set((try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/block")) ?? [])
        for title in titles {
            let name = title.wholeMatch(of: /by_disk \[dev=(.+)\]:/).map { String($0.1) }
            #expect(name.map { devices.contains($0) || $0 == "0" } == true, "\(result.stdout)")
        }
    }
}
