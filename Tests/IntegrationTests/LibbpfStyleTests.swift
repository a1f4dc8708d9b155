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

        @Test(arguments: ["newer_libbpf.bpf.c", "kconfig_header.bpf.c", "spawnsnoop.bpf.c", "opensnoop_lite.bpf.c"])
        func compilesAndVerifies(probe: String) throws {
            let output = Self.cache.path + "/" + probe + ".o"
            let result = try Tool.run(["compile", "--verify", "-I", Self.directory + "/include", Self.directory + "/" + probe, "-o", output],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
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
