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

        @Test(arguments: ["newer_libbpf.bpf.c", "kconfig_header.bpf.c", "spawnsnoop.bpf.c", "opensnoop_lite.bpf.c", "uapi_headers.bpf.c",
                          "irqcount.bpf.c", "pidbuckets.bpf.c", "diskflavours.bpf.c", "taskstorage.bpf.c"])
        func compilesAndVerifies(probe: String) throws {
            let output = Self.cache.path + "/" + probe + ".o"
            let result = try Tool.run(["compile", "--verify", "-I", Self.directory + "/include", Self.directory + "/" + probe, "-o", output],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
        }

        /// LLVM 14's v2 code of irqcount and v3 code of pidbuckets are refused by the verifier: by
        /// default each verifies (v2 first, v3 when the kernel refuses that), --mcpu gets one try, and
        /// the object written is the one that was accepted, so it runs as it is.
        @Test func refusedV2CodeIsCompiledAgainAsV3() throws {
            let irqcount = Self.directory + "/irqcount.bpf.c", pidbuckets = Self.directory + "/pidbuckets.bpf.c"
            let output = Self.cache.path + "/irqcount-fallback.o"
            let fallback = try Tool.run(["compile", "-v", "--verify", irqcount, "-o", output], environment: environment)
            #expect(fallback.status == 0, "\(fallback.stderr)")
            #expect(fallback.stderr.contains("refused the BPF v2 code; compiling as v3"), "\(fallback.stderr)")
            let run = try Tool.run([output, "-d", "1"], environment: environment)
            #expect(run.status == 0, "\(run.stderr)")
            let fromSource = try Tool.run([irqcount, "-d", "1"], environment: environment)
            #expect(fromSource.status == 0, "\(fromSource.stderr)")

            let v2 = try Tool.run(["compile", "--verify", "--mcpu", "v2", irqcount, "-o", Self.cache.path + "/irqcount-v2.o"], environment: environment)
            #expect(v2.status == 5 && v2.stderr.contains("verifier rejected"), "\(v2.stderr)")
            let v3 = try Tool.run(["compile", "--verify", "--mcpu", "v3", pidbuckets, "-o", Self.cache.path + "/pidbuckets-v3.o"], environment: environment)
            #expect(v3.status == 5 && v3.stderr.contains("verifier rejected"), "\(v3.stderr)")
        }

        /// A probe that includes vmlinux.h takes the kernel's BTF first, before any header tree.
        @Test func vmlinuxHeaderComesFromBTFFirst() throws {
            let result = try Tool.run(["compile", "-v", Self.directory + "/opensnoop_lite.bpf.c", "-o", Self.cache.path + "/btf-first.o"],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("the probe includes vmlinux.h, which only kernel BTF gives"), "\(result.stderr)")
        }

        /// Headers without BTF have no vmlinux.h to give: the compile error says why, and what to do.
        @Test(.enabled(if: FileManager.default.fileExists(atPath: TestInputs.testKernelArchive), "needs ../shared/testkernel"))
        func vmlinuxHeaderNeedsBTF() throws {
            let result = try Tool.run(["compile", "--headers", TestInputs.testKernelArchive, Self.directory + "/opensnoop_lite.bpf.c",
                                       "-o", Self.cache.path + "/no-btf.o"], environment: environment)
            #expect(result.status == 3, "\(result.stderr)")
            #expect(result.stderr.contains("vmlinux.h is generated from a kernel's BTF"), "\(result.stderr)")
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
