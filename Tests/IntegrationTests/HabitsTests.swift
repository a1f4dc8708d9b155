import Foundation
import KprobeSupport
import Testing
import TestSupport

extension HostKernel {
    /// What bpftrace and BCC users do every day: probes from the command line and standard input,
    /// results to a file, a traced command's status as kprobe-run's own.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct HabitsTests {
        static let scratch = try! ScratchDirectory("habits")
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"] }

        /// Counts context switches in a global, printed with the maps (at exit, every -i): output
        /// at once on any machine, without trace_pipe, which only one reader can hold at a time.
        static let counter = """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            __u64 switches = 0;
            SEC("tracepoint/sched/sched_switch") int on_switch(void *ctx) { __sync_fetch_and_add(&switches, 1); return 0; }
            char LICENSE[] SEC("license") = "GPL";
            """

        /// `echo PROBE | kprobe-run - …`, through a shell as users type it.
        func piped(_ probe: String, _ arguments: [String]) throws -> (status: Int32, output: [UInt8]) {
            let outcome = try ChildProcess.run([
                "sh", "-c", "probe=$1 cache=$2 binary=$3; shift 3; printf '%s\\n' \"$probe\" | KPROBE_RUN_CACHE_DIR=\"$cache\" \"$binary\" - \"$@\" 2>&1", "sh",
                probe, Self.scratch.path + "/cache", Tool.binary,
            ] + arguments, path: "/bin/sh", stdout: .head(1 << 20))
            return (outcome.status.code, outcome.stdout)
        }

        @Test func probeFromStandardInput() throws {
            let result = try piped(Self.counter, ["-d", "1", "--format", "json"])
            let output = String(decoding: result.output, as: UTF8.self)
            #expect(result.status == 0, "\(output)")
            #expect(output.contains("\"type\":\"map\",\"name\":\".bss\""), "\(output)")
            let broken = try piped("#include \"vmlinux.h\"\nint broken( {", ["-d", "1"])
            #expect(broken.status == 3)
            #expect(String(decoding: broken.output, as: UTF8.self).contains("<stdin>:2:13: error:"), "\(String(decoding: broken.output, as: UTF8.self))")
        }

        @Test func resultsToAFileAsTheyCome() throws {
            let file = Self.scratch.path + "/events.json"
            var seenWhileRunning = false
            let result = try Tool.run(["-e", Self.counter, "--format", "json", "-i", "0.5", "-o", file, "-d", "4"],
                                      completeEnvironment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
                                      timeout: 120, interval: 0.2) { process, _ in
                if process.isRunning, let size = try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int, size > 0 {
                    seenWhileRunning = true
                }
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.isEmpty, "results went to stdout: \(result.stdout.prefix(200))")
            let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
            #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("{\"type\":") }, "\(lines.prefix(3))")
            #expect(seenWhileRunning, "no line reached the file before the run ended")
        }

        @Test func exitWithTheCommandsStatus() throws {
            let command = ["-e", Self.counter, "-c", "sh -c 'sleep 1; exit 3'"]
            let plain = try Tool.run(command, environment: environment)
            #expect(plain.status == 0, "\(plain.stderr)")
            #expect(plain.stderr.contains("exited with status 3"), "\(plain.stderr)")
            let forwarded = try Tool.run(command + ["--exit-with-command"], environment: environment)
            #expect(forwarded.status == 3, "\(forwarded.stderr)")
        }
    }
}
