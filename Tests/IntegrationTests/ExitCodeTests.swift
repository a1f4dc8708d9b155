import Foundation
import Glibc
import KprobeSupport
import Testing
import TestSupport

extension HostKernel {
    /// README's exit-code table, row by row, through the real binary: each row's status comes
    /// with a message that names the problem.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs and switches users: run as root"))
    struct ExitCodeTests {
        struct Row: CustomTestStringConvertible, Sendable {
            var status: Int32
            var arguments: [String]
            var says: String
            var testDescription: String { "\(status): kprobe-run \(arguments.joined(separator: " "))" }
        }

        static let scratch = try! ScratchDirectory("exit-codes")
        static var cache: String { scratch.path + "/cache" }

        /// Counts context switches in a global, printed with the maps (at exit, every -i): output
        /// without trace_pipe, which only one reader on the machine can hold at a time.
        static let counter = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            __u64 switches = 0;
            SEC("tracepoint/sched/sched_switch") int on_switch(void *ctx) { __sync_fetch_and_add(&switches, 1); return 0; }
            char LICENSE[] SEC("license") = "GPL";
            """

        /// Reads through an unchecked map value: the verifier refuses the NULL dereference.
        static let unchecked = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, u32); __type(value, u64); } counts SEC(".maps");
            SEC("tracepoint/syscalls/sys_enter_openat") int unchecked(void *ctx) {
                u32 key = 0; u64 *value = bpf_map_lookup_elem(&counts, &key); return *value;
            }
            char LICENSE[] SEC("license") = "GPL";
            """

        static let nowhere = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            SEC("tracepoint/nosuchcategory/nosuchevent") int nowhere(void *ctx) { return 0; }
            char LICENSE[] SEC("license") = "GPL";
            """

        static let rows: [Row] = [
            Row(status: 0, arguments: ["-e", counter, "-d", "1"], says: ""),
            Row(status: 0, arguments: ["help", "run"], says: ""),
            Row(status: 2, arguments: ["help", "bogus"], says: "no such command"),
            Row(status: 2, arguments: [Tool.example("hello.c"), "-d", "-1"], says: "positive number of seconds"),
            Row(status: 2, arguments: [Tool.example("hello.c"), "-p", "999999999", "-d", "1"], says: "no such process"),
            Row(status: 2, arguments: [Tool.packageRoot + "/bpf-examples", "-d", "1"], says: "is a directory"),
            Row(status: 2, arguments: ["/nonexistent/probe.c"], says: "no such file"),
            Row(status: 2, arguments: [Tool.example("hello.c"), "--headers", "/nonexistent/kheaders.tar.xz"], says: "no such file or directory"),
            Row(status: 2, arguments: ["-", "-d", "1"], says: "has no programs"),
            Row(status: 2, arguments: ["-e", "int counter;", "-d", "1"], says: "has no programs"),
            Row(status: 2, arguments: [Tool.example("hello.c"), "-a", "kprobe-vfs_read"], says: "kprobe:SYM=FUNC"),
            Row(status: 2, arguments: [], says: "give a probe"),
            Row(status: 3, arguments: ["-e", "int broken( {", "-d", "1"], says: "<command line>:1:13: error:"),
            Row(status: 4, arguments: [Tool.example("hello.c"), "--headers", Tool.packageRoot + "/README.md"], says: "is not a kheaders archive"),
            Row(status: 5, arguments: ["-e", unchecked, "-d", "1"], says: "invalid mem access"),
            Row(status: 6, arguments: ["-e", nowhere, "-d", "1"], says: "nosuchcategory"),
        ]

        @Test(arguments: rows)
        func row(_ row: Row) throws {
            let result = try Tool.run(row.arguments, environment: ["KPROBE_RUN_CACHE_DIR": Self.cache])
            #expect(result.status == row.status, "\(result.stderr)")
            #expect(row.says.isEmpty || result.stderr.contains(row.says), "\(result.stderr)")
        }

        /// 1: results that cannot be written (the maps at exit, to a full disk) end the run with an internal error.
        @Test func internalErrorWhenResultsCannotBeWritten() throws {
            let result = try ChildProcess.run([
                "sh", "-c", "KPROBE_RUN_CACHE_DIR=\"$1\" exec \"$2\" -e \"$3\" -d 1 >/dev/full", "sh",
                Self.cache, Tool.binary, Self.counter,
            ], path: "/bin/sh", stdout: .none, stderr: .head(1 << 16))
            let stderr = String(decoding: result.stderr, as: UTF8.self)
            #expect(result.status.code == 1, "\(stderr)")
            #expect(stderr.contains("cannot write"), "\(stderr)")
        }

        /// 7: an unprivileged user runs a compiled object (as nobody, without capabilities).
        @Test func notPermittedForAnUnprivilegedUser() throws {
            let object = Self.scratch.path + "/counter.o"
            let compiled = try Tool.run(["compile", "-e", Self.counter, "-o", object], environment: ["KPROBE_RUN_CACHE_DIR": Self.cache])
            try #require(compiled.status == 0, "\(compiled.stderr)")
            try #require(chmod(Self.scratch.path, 0o755) == 0)
            let nobodyCache = try ScratchDirectory("nobody-cache")
            try #require(chown(nobodyCache.path, 65534, 65534) == 0)
            let result = try ChildProcess.run([
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                "/usr/bin/env", "KPROBE_RUN_CACHE_DIR=\(nobodyCache.path)", Tool.binary, object, "-d", "1",
            ], path: "/usr/bin/setpriv", stdout: .none, stderr: .head(1 << 16))
            let stderr = String(decoding: result.stderr, as: UTF8.self)
            #expect(result.status.code == 7, "\(stderr)")
            #expect(stderr.contains("CAP_BPF") || stderr.contains("root"), "\(stderr)")
        }
    }
}
