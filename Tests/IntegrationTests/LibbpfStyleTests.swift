import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// The libbpf-tools-style fixtures (Tests/fixtures/libbpf-style), compiled and verified on this
    /// machine's kernel, and one run whose records print decoded.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct LibbpfStyleTests {
        static let cache = try! ScratchDirectory()
        static let directory = Tool.packageRoot + "/Tests/fixtures/libbpf-style"
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        @Test(arguments: ["newer_libbpf.bpf.c", "kconfig_header.bpf.c", "spawnsnoop.bpf.c", "opensnoop_lite.bpf.c", "uapi_headers.bpf.c"])
        func compilesAndVerifies(probe: String) throws {
            let output = Self.cache.path + "/" + probe + ".o"
            let result = try Tool.run(["compile", "--verify", "-I", Self.directory + "/include", Self.directory + "/" + probe, "-o", output],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
        }

        /// The user's -I comes before the directories kprobe-run serves: a tool's own vmlinux.h wins.
        @Test func usersIncludeDirectoryComesFirst() throws {
            let output = Self.cache.path + "/own_vmlinux.o"
            let result = try Tool.run(["compile", "--verify", "-I", Self.directory + "/own-vmlinux", Self.directory + "/own_vmlinux.bpf.c",
                                       "-o", output], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
        }

        /// A record sent only as long as its variable-length tail prints by field, its tail up to
        /// the length it came with (the record type was found through a `void *` helper).
        @Test func variableLengthRecordsPrintDecoded() throws {
            let marker = "kprobe-run-spawn-\(UInt32.random(in: 0...UInt32.max))"
            let result = try Tool.run(["-I", Self.directory + "/include", Self.directory + "/spawnsnoop.bpf.c", "-d", "5"],
                                      environment: environment) {
                _ = try? Process.run(URL(fileURLWithPath: "/bin/echo"), arguments: [marker])
            }
            #expect(result.status == 0, "\(result.stderr)")
            let line = result.stdout.split(separator: "\n").first { $0.contains(marker) }
            #expect(line?.contains("comm=") == true && line?.contains("args=/bin/echo \(marker)") == true,
                    "no decoded record for \(marker) in: \(result.stdout.prefix(2000))")
        }

        @Test func perfRecordsPrintDecoded() throws {
            let marker = "/tmp/kprobe-run-libbpf-style-\(UUID().uuidString)"
            let result = try Tool.run([Self.directory + "/opensnoop_lite.bpf.c", "-d", "5"], environment: environment) {
                _ = open(marker, O_RDONLY)
            }
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").filter { $0.contains(marker) }
            #expect(lines.first?.contains("comm=") == true, "no decoded record for \(marker) in: \(result.stdout.prefix(2000))")
        }
    }
}
