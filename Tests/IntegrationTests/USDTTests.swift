import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// USDT probes for real: Tests/fixtures/usdt is built with the machine's cc and <sys/sdt.h>
    /// (systemtap-sdt-dev), and its probes' arguments come back through libbpf's USDT support,
    /// from a libbpf-style probe and from a BCC one.
    @Suite(.serialized, .enabled(if: isRoot && USDTTarget.canBuild, "needs root, cc and <sys/sdt.h> (systemtap-sdt-dev)"))
    struct USDTTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        /// libbpf style: one program named by its SEC, the other by --attach. Without -p the kernel
        /// raises the guarded probe's semaphore in every process running the binary.
        @Test func libbpfStyleProbesPrintTheirArguments() throws {
            let target = try USDTTarget()
            let process = try target.start(seconds: 30)
            defer { process.kill() }
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([try target.libbpfProbe(), "-d", "3", "-a", "usdt:\(target.binary):kprobe_run_test:guarded=on_guarded"],
                                      environment: environment)
            }
            #expect(result.status == 0, "\(result.stderr)")
            USDTTarget.expectTicks(in: result.stdout, prefix: "usdt tick ")
            #expect(result.stdout.contains("usdt guarded "), "stdout: \(result.stdout.prefix(2000))")
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }

        /// -p: the probes fire, and the semaphore is raised, in that process only; a second copy
        /// of the binary runs unseen and counts its guarded probe enabled 0 times. The probe is
        /// named without its binary, which is found among the files the process maps.
        @Test func pidLimitsProbesAndSemaphoresToOneProcess() throws {
            let target = try USDTTarget()
            let stop = target.scratch.path + "/stop"
            let traced = try target.start(seconds: 60, stopFile: stop), other = try target.start(seconds: 60, stopFile: stop)
            defer { traced.kill(); other.kill() }
            let result = try Tool.run([try target.libbpfProbe(), "-d", "3", "-v", "-p", String(traced.process.processIdentifier),
                                       "-a", "usdt:kprobe_run_test:guarded=on_guarded"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("usdt kprobe_run_test:guarded is in \(target.binary)"), "\(result.stderr)")
            let guarded = result.stdout.split(separator: "\n").filter { $0.hasPrefix("usdt guarded ") }
            #expect(!guarded.isEmpty, "stdout: \(result.stdout.prefix(2000))")
            #expect(guarded.allSatisfy { $0.hasSuffix(" pid \(traced.process.processIdentifier)") }, "\(guarded.prefix(5))")
            // Both end when the stop file appears and say how often their semaphore was set.
            FileManager.default.createFile(atPath: stop, contents: nil)
            traced.process.waitUntilExit()
            other.process.waitUntilExit()
            #expect(traced.enabledCount > 0, "traced: \(traced.output)")
            #expect(other.enabledCount == 0, "other: \(other.output)")
        }

        /// BCC style: bpf_usdt_readarg / bpf_usdt_readarg_p (arguments counted from 1), attached
        /// with -a as a BCC tool's USDT(path=…).enable_probe would.
        @Test(.enabled(if: FileManager.default.fileExists(atPath: BCC.headers), "needs ../shared/testkernel"))
        func bccStyleProbeReadsArguments() throws {
            let target = try USDTTarget()
            let process = try target.start(seconds: 60)
            defer { process.kill() }
            let result = try Tool.run(["--headers", BCC.headers, try target.bccProbe(), "-d", "3",
                                       "-a", "usdt:\(target.binary):kprobe_run_test:tick=on_tick"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            USDTTarget.expectTicks(in: result.stdout, prefix: "bcc tick ")
            // Without -a the program says where it could go: a USDT probe, since it reads one.
            let unattached = try Tool.run(["--headers", BCC.headers, try target.bccProbe(), "-d", "1"], environment: environment)
            #expect(unattached.status == 6, "\(unattached.stderr)")
            #expect(unattached.stderr.contains("--attach usdt:/PATH/TO/BINARY:PROVIDER:NAME=on_tick"), "\(unattached.stderr)")
        }

        /// A BCC tool's habit on a real runtime: Python's own gc__start/gc__done probes (Debian's
        /// python3 is built with them), named without the binary and found through -p, their
        /// arguments sent through a perf buffer as pythongc does.
        @Test(.enabled(if: FileManager.default.fileExists(atPath: BCC.headers) && USDTTarget.python != nil,
                       "needs ../shared/testkernel and a python3 with USDT probes"))
        func bccToolHabitsOnPythonsProbes() throws {
            let python = Process()
            python.executableURL = URL(fileURLWithPath: USDTTarget.python!)
            // Cycles only the collector frees, collected every 50 ms for at most a minute.
            python.arguments = ["-c", """
                import gc, time
                end = time.time() + 60
                while time.time() < end:
                    for _ in range(10):
                        cycle = []
                        cycle.append(cycle)
                    gc.collect()
                    time.sleep(0.05)
                """]
            try python.run()
            defer { python.kill() }
            Thread.sleep(forTimeInterval: 0.3)
            let pid = python.processIdentifier
            let result = try Tool.run(["--headers", BCC.headers, Tool.example("bcc/pygc.c"), "-d", "3", "-p", String(pid),
                                       "-a", "usdt:python:gc__start=on_gc_start", "-a", "usdt:python:gc__done=on_gc_done"],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let events = result.stdout.split(separator: "\n").filter { $0.hasPrefix("pid=\(pid) generation=2 ") }
            #expect(!events.isEmpty, "stdout: \(result.stdout.prefix(2000))")
            // gc.collect() frees at least the ten cycles made before it.
            #expect(events.contains { line in
                line.split(separator: " ").last.map { $0.hasPrefix("collected=") && (Int($0.dropFirst(10)) ?? 0) >= 10 } == true
            }, "\(events.prefix(5))")
        }

        @Test func missingProbeAndMissingSupportSayWhatToDo() throws {
            let target = try USDTTarget()
            let missing = try Tool.run([try target.libbpfProbe(), "-d", "1", "-a", "usdt:\(target.binary):kprobe_run_test:nothing=on_guarded"],
                                       environment: environment)
            #expect(missing.status == 6, "\(missing.stderr)")
            #expect(missing.stderr.contains("kprobe-run -l 'usdt:\(target.binary):*'"), "\(missing.stderr)")
            // Without its binary, a probe is looked for in a -p process only.
            let noPID = try Tool.run([try target.libbpfProbe(), "-d", "1", "-a", "usdt:kprobe_run_test:guarded=on_guarded"], environment: environment)
            #expect(noPID.status == 2, "\(noPID.stderr)")
            #expect(noPID.stderr.contains("or a process with -p"), "\(noPID.stderr)")
            // A program that does not include usdt.bpf.h has none of libbpf's USDT maps.
            let plain = try target.scratch.write(named: "plain.bpf.c", """
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>
                SEC("usdt") int on_tick(void *ctx) { return 0; }
                char LICENSE[] SEC("license") = "GPL";
                """)
            let unsupported = try Tool.run([plain, "-d", "1", "-a", "usdt:\(target.binary):kprobe_run_test:tick=on_tick"], environment: environment)
            #expect(unsupported.status == 6, "\(unsupported.stderr)")
            #expect(unsupported.stderr.contains("include <bpf/usdt.bpf.h>"), "\(unsupported.stderr)")
        }

        @Test func listShowsTheBinarysProbes() throws {
            let target = try USDTTarget()
            let result = try Tool.run(["-l", "-v", "usdt:\(target.binary):*"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains("usdt:\(target.binary):kprobe_run_test:tick"), "\(result.stdout)")
            #expect(lines.contains("usdt:\(target.binary):kprobe_run_test:guarded"), "\(result.stdout)")
            #expect(lines.contains("    guarded by a semaphore"), "\(result.stdout)")
            #expect(lines.filter { $0.hasPrefix("    arguments: ") }.count == 2, "\(result.stdout)")
            // -p: the probes of every file a process maps, as tplist -p.
            let process = try target.start(seconds: 10)
            defer { process.kill() }
            let inProcess = try Tool.run(["-l", "-p", String(process.process.processIdentifier), "usdt:kprobe_run_test:*"], environment: environment)
            #expect(inProcess.status == 0, "\(inProcess.stderr)")
            #expect(inProcess.stdout == "usdt:\(target.binary):kprobe_run_test:tick\nusdt:\(target.binary):kprobe_run_test:guarded\n", "\(inProcess.stdout)")
        }
    }
}

/// Tests/fixtures/usdt built into a scratch directory, and the probes that trace it.
struct USDTTarget {
    static let fixtures = Tool.packageRoot + "/Tests/fixtures/usdt"
    static var canBuild: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/cc")
            && ["/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h", "/usr/include/aarch64-linux-gnu/sys/sdt.h"]
                .contains { FileManager.default.fileExists(atPath: $0) }
    }

    /// A python3 whose binary has USDT probes (gc__start among them), if the machine has one.
    static let python: String? = {
        for candidate in ["/usr/bin/python3.11", "/usr/bin/python3"] where FileManager.default.isExecutableFile(atPath: candidate) {
            let listing = try? Tool.run(["-l", "usdt:\(candidate):python:gc__start"])
            if listing?.stdout.contains("gc__start") == true { return candidate }
        }
        return nil
    }()

    let scratch: ScratchDirectory
    let binary: String

    init() throws {
        scratch = try ScratchDirectory()
        binary = scratch.path + "/usdt-target"
        let cc = try Process.run(URL(fileURLWithPath: "/usr/bin/cc"),
                                 arguments: ["-O1", "-o", binary, Self.fixtures + "/target.c", Self.fixtures + "/guarded.c"])
        cc.waitUntilExit()
        guard cc.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
    }

    /// Lines "PREFIX N: tick number N" from the tick probe: both arguments, the count and the
    /// string the program formatted from it, arrive and agree.
    static func expectTicks(in stdout: String, prefix: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let ticks = stdout.split(separator: "\n").filter { $0.hasPrefix(prefix) }
        #expect(!ticks.isEmpty, "stdout: \(stdout.prefix(2000))", sourceLocation: sourceLocation)
        #expect(ticks.allSatisfy { line in
            let words = line.split(separator: " ")
            return words.count == 6 && words[2].dropLast() == words[5]
        }, "\(ticks.prefix(5))", sourceLocation: sourceLocation)
    }

    /// A running copy, which prints how often its guarded probe was enabled when it ends.
    final class Running: @unchecked Sendable {
        let process = Process()
        private let pipe = Pipe()

        init(_ binary: String, seconds: Int, stopFile: String?) throws {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = [String(seconds)] + (stopFile.map { [$0] } ?? [])
            process.standardOutput = pipe
            try process.run()
        }

        func kill() { if process.isRunning { process.kill() } }

        /// Everything it printed; read once it has ended.
        lazy var output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)

        /// From "guarded probe enabled N times"; -1 when it did not say.
        var enabledCount: Int {
            let words = output.split(separator: " ")
            return words.count >= 4 ? Int(words[3]) ?? -1 : -1
        }
    }

    func start(seconds: Int, stopFile: String? = nil) throws -> Running {
        let running = try Running(binary, seconds: seconds, stopFile: stopFile)
        // Attaching needs the binary only, but the first events need the process past exec.
        Thread.sleep(forTimeInterval: 0.2)
        return running
    }

    /// As libbpf's own USDT examples start: usdt.bpf.h (and its `__kconfig` extern) among the
    /// leading includes, which go into the precompiled header.
    func libbpfProbe() throws -> String {
        try scratch.write(named: "tick.bpf.c", """
            #include "vmlinux.h"
            #include <bpf/bpf_helpers.h>
            #include <bpf/bpf_tracing.h>
            #include <bpf/usdt.bpf.h>

            char LICENSE[] SEC("license") = "GPL";

            SEC("usdt/\(binary):kprobe_run_test:tick")
            int BPF_USDT(on_tick, long count, const char *message)
            {
                char text[32];

                bpf_probe_read_user_str(text, sizeof(text), message);
                bpf_printk("usdt tick %ld: %s", count, text);
                return 0;
            }

            SEC("usdt")
            int BPF_USDT(on_guarded, long value)
            {
                bpf_printk("usdt guarded %ld pid %d", value, bpf_get_current_pid_tgid() >> 32);
                return 0;
            }
            """)
    }

    func bccProbe() throws -> String {
        try scratch.write(named: "tick.c", """
            #include <uapi/linux/ptrace.h>

            int on_tick(struct pt_regs *ctx)
            {
                long count = 0;
                char message[32] = {};

                bpf_usdt_readarg(1, ctx, &count);
                bpf_usdt_readarg_p(2, ctx, &message, sizeof(message));
                bpf_trace_printk("bcc tick %ld: %s\\n", count, message);
                return 0;
            }
            """)
    }
}

extension ScratchDirectory {
    /// Writes `text` to a file of the directory and returns its path.
    func write(named name: String, _ text: String) throws -> String {
        let path = self.path + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
