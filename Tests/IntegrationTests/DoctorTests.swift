import Foundation
import KprobeSupport
import Testing
import TestSupport

extension HostKernel {
    /// What `kprobe-run doctor` says about this machine agrees with what kprobe-run then does.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct DoctorTests {
        static let scratch = try! ScratchDirectory("doctor")
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"] }

        func report() throws -> [String: (status: String, line: String)] {
            let result = try Tool.run(["doctor", "--format", "json"])
            try #require(result.status == 0, "\(result.stderr)")
            var checks: [String: (String, String)] = [:]
            for line in result.stdout.split(separator: "\n") {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
                checks[try #require(object["name"])] = (try #require(object["status"]), String(line))
            }
            return checks
        }

        @Test func everyCheckIsReported() throws {
            let checks = try report()
            for name in ["bpf", "btf", "kprobes", "uprobes", "tracefs", "fentry", "ringbuf", "kheaders",
                         "lib-modules-headers", "selinux", "unprivileged-bpf", "lockdown"] {
                #expect(checks[name] != nil, "no \(name) check")
            }
            #expect(checks["bpf"]?.status == "ok", "tests run as root")
            #expect(checks["btf"]?.status == (FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") ? "ok" : "missing"))
        }

        /// kprobes and fentry: doctor's verdict matches what attaching such a probe does.
        @Test(arguments: [
            ("kprobes", "SEC(\"kprobe/vfs_read\") int on_read(void *ctx) { return 0; }"),
            ("fentry", "SEC(\"fentry/vfs_read\") int BPF_PROG(on_read) { return 0; }"),
        ])
        func verdictMatchesAnAttach(check: String, program: String) throws {
            let checks = try report()
            let verdict = try #require(checks[check])
            guard FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") else { return }
            let probe = """
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>
                #include <bpf/bpf_tracing.h>
                \(program)
                char LICENSE[] SEC("license") = "GPL";
                """
            let run = try Tool.run(["-e", probe, "-d", "1"], environment: environment)
            if verdict.status == "ok" {
                #expect(run.status == 0, "doctor: \(verdict.line); run: \(run.stderr)")
            } else {
                #expect(run.status == 6, "doctor: \(verdict.line); run: \(run.stderr)")
            }
        }
    }
}
