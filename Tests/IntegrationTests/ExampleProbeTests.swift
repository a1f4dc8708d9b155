import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// The bpf-examples, run for real against this machine's kernel (BTF, tracepoints, uprobes).
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct ExampleProbeTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        @Test func helloPrintsFromTracepoint() throws {
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([Tool.example("hello.c"), "-d", "4"], environment: environment) {
                    _ = try? Process.run(URL(fileURLWithPath: "/bin/true"), arguments: [])
                }
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("hello from true"), "stdout: \(result.stdout)")
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }

        @Test func opensnoopReportsTheFileTheTestOpens() throws {
            let marker = "/tmp/kprobe-run-opensnoop-\(UUID().uuidString)"
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([Tool.example("opensnoop.c"), "-d", "5"], environment: environment) {
                    _ = open(marker, O_RDONLY)
                }
            }
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").filter { $0.contains(marker) }
            #expect(!lines.isEmpty, "no event for \(marker) in: \(result.stdout.prefix(2000))")
            #expect(lines.first?.contains("pid=") == true)
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }

        @Test func syscountPrintsACountTableAtExit() throws {
            let result = try Tool.run([Tool.example("syscount.c"), "-d", "3"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            // The table names the map and has at least one command with a count.
            #expect(result.stdout.contains("syscalls"), "stdout: \(result.stdout)")
            #expect(result.stdout.split(separator: "\n").contains { line in
                line.split(separator: " ").last.map { Int($0) != nil } == true
            })
        }

        @Test func readlineSeesWhatBashReads() throws {
            let marker = "kprobe_run_readline_\(UInt32.random(in: 0...UInt32.max))"
            // An interactive bash on a pty (script) reads its commands with readline.
            let bash = Process()
            bash.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            bash.arguments = ["-qec", "bash --norc --noprofile -i", "/dev/null"]
            let input = Pipe()
            bash.standardInput = input
            bash.standardOutput = FileHandle.nullDevice
            bash.standardError = FileHandle.nullDevice
            try bash.run()
            // The marker is typed again on every tick: when the probe attaches is up to the
            // machine's load, and a uretprobe only sees readline() calls entered after it.
            let result = try Tool.run([Tool.example("readline.c"), "-d", "6"], environment: environment) {
                input.fileHandleForWriting.write(Data("echo \(marker)\n".utf8))
            }
            input.fileHandleForWriting.write(Data("exit\n".utf8))
            try input.fileHandleForWriting.close()
            bash.waitUntilExit()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains(marker), "stdout: \(result.stdout)")
        }

        @Test func compiledObjectRunsWithoutCompiling() throws {
            let scratch = try ScratchDirectory()
            let object = scratch.path + "/hello.o"
            let compile = try Tool.run(["compile", Tool.example("hello.c"), "-o", object], environment: environment)
            #expect(compile.status == 0, "\(compile.stderr)")
            let head = try FileHandle(forReadingFrom: URL(fileURLWithPath: object)).readData(ofLength: 4)
            #expect(head == Data([0x7f, 0x45, 0x4c, 0x46]))
            // A compiler that would fail proves the run does no compile work.
            let result = try Tool.run([object, "-d", "2", "-v"], environment: environment.merging(["KPROBE_RUN_CC": "/nonexistent"]) { $1 })
            #expect(result.status == 0, "\(result.stderr)")
        }

        @Test func kprobeOnThisKernelFailsToAttachWithExit6() throws {
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([Tool.example("vfsopen.c"), "-d", "2"], environment: environment)
            }
            #expect(result.status == 6, "stdout: \(result.stdout) stderr: \(result.stderr)")
            #expect(result.stderr.lowercased().contains("kprobe"), "\(result.stderr)")
            #expect(left.isEmpty, "programs left loaded: \(left)")
        }
    }
}
