import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// BCC-dialect programs, unchanged: BCC's own tools (../shared/bcc-corpus) through the verifier,
    /// and bpf-examples/bcc run for real. This kernel has no headers of its own, so the test kernel's
    /// kheaders archive stands in; tracepoint layouts come from this kernel's tracefs.
    @Suite(.serialized, .enabled(if: isRoot && FileManager.default.fileExists(atPath: BCC.headers), "needs root and ../shared/testkernel"))
    struct BCCTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        @Test(arguments: BCC.corpus)
        func corpusProgramCompilesAndPassesTheVerifier(_ program: String) throws {
            let scratch = try ScratchDirectory()
            let result = try Tool.run(
                ["compile", "--verify", "--dialect", "bcc", "--headers", BCC.headers, program, "-o", scratch.path + "/out.o"],
                environment: environment)
            #expect(result.status == 0, "\(program): \(result.stderr)")
            #expect(!result.stderr.contains("warning:"), "\(program): \(result.stderr)")
        }

        /// The rewrite runs in kprobe-run-bcc before the worker; its result is cached like any
        /// object, so a second run starts neither process.
        @Test func secondCompileComesFromTheCompileCache() throws {
            let scratch = try ScratchDirectory()
            let arguments = ["compile", "-v", "--headers", BCC.headers, Tool.example("bcc/opencount.c"), "-o", scratch.path + "/out.o"]
            let first = try Tool.run(arguments, environment: environment)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stderr.contains("stored in the compile cache"), "\(first.stderr)")
            let second = try Tool.run(arguments, environment: environment)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stderr.contains("compile cache hit"), "\(second.stderr)")
        }

        @Test func execsnoopExamplePrintsDecodedEvents() throws {
            let result = try Tool.run(["--headers", BCC.headers, Tool.example("bcc/execsnoop.c"), "-d", "4"], environment: environment) {
                _ = try? Process.run(URL(fileURLWithPath: "/bin/true"), arguments: [])
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.split(separator: "\n").contains { $0.contains("comm=true") }, "\(result.stdout.prefix(2000))")
        }

        @Test func readsizeExamplePrintsALog2Histogram() throws {
            let result = try Tool.run(["--headers", BCC.headers, Tool.example("bcc/readsize.c"), "-d", "3"], environment: environment) {
                _ = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)
            }
            #expect(result.status == 0, "\(result.stderr)")
            let buckets = result.stdout.split(separator: "\n").filter { $0.contains(" -> ") && $0.contains("|") }
            #expect(!buckets.isEmpty, "\(result.stdout)")
            #expect(buckets.contains { $0.contains("*") }, "\(result.stdout)")
        }
    }
}

enum BCC {
    static let headers = Tool.packageRoot + "/../shared/testkernel/kheaders.tar.xz"
    static var corpus: [String] {
        let directory = Tool.packageRoot + "/../shared/bcc-corpus"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".c") }.sorted().map { directory + "/" + $0 }
    }
}
