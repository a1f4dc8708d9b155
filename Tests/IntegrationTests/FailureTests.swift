import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Bad input gets a clear message and its own exit status, and leaves nothing behind.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct FailureTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        private func write(_ text: String, named name: String, in directory: ScratchDirectory) throws -> String {
            let path = directory.path + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        @Test func syntaxErrorExits3WithFileLineColumn() throws {
            let scratch = try ScratchDirectory()
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                SEC("tracepoint/syscalls/sys_enter_openat")
                int broken(void *ctx)
                {
                    return 0
                }
                """, named: "broken.c", in: scratch)
            let result = try Tool.run([probe, "-d", "1"], environment: environment)
            #expect(result.status == 3)
            #expect(result.stderr.contains("broken.c:7:13: error:"), "\(result.stderr)")
            #expect(!result.stderr.contains("/kprobe-run-it-") || result.stderr.contains(probe), "internal path leaked: \(result.stderr)")
        }

        @Test func crashingWorkerIsACompileErrorNotACrash() throws {
            // A file in the repository, not one written now: a script written and executed at
            // once can fail with ETXTBSY while another thread forks.
            let worker = Tool.packageRoot + "/Tests/fixtures/crashing-worker"
            let result = try Tool.run([Tool.example("hello.c"), "-d", "1"], environment: environment.merging(["KPROBE_RUN_CC": worker]) { $1 })
            #expect(result.status == 3, "\(result.stderr)")
            #expect(!result.uncaughtSignal)
            #expect(result.stderr.lowercased().contains("worker"), "\(result.stderr)")
        }

        @Test func missingProbeIsAUsageError() throws {
            let result = try Tool.run(["/nonexistent/probe.c"])
            #expect(result.status == 2)
            #expect(result.stderr.contains("/nonexistent/probe.c"))
        }

        @Test func badAttachSpecIsAUsageError() throws {
            let result = try Tool.run([Tool.example("hello.c"), "-a", "kprobe-vfs_read"])
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("kprobe:SYM=FUNC"), "\(result.stderr)")
        }

        @Test func rejectedProgramExits5WithVerifierLog() throws {
            let scratch = try ScratchDirectory()
            // Reads through an unchecked map value: the verifier refuses the NULL dereference.
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                struct {
                    __uint(type, BPF_MAP_TYPE_HASH);
                    __uint(max_entries, 16);
                    __type(key, u32);
                    __type(value, u64);
                } counts SEC(".maps");

                SEC("tracepoint/syscalls/sys_enter_openat")
                int unchecked(void *ctx)
                {
                    u32 key = 0;
                    u64 *value = bpf_map_lookup_elem(&counts, &key);
                    return *value;
                }

                char LICENSE[] SEC("license") = "GPL";
                """, named: "unchecked.c", in: scratch)
            var result: Tool.Result!
            let left = try LoadedPrograms.leftBehind {
                result = try Tool.run([probe, "-d", "1"], environment: environment)
            }
            #expect(result.status == 5, "\(result.stderr)")
            #expect(result.stderr.contains("invalid mem access") || result.stderr.contains("map_value_or_null"), "\(result.stderr)")
            #expect(left.isEmpty)
        }

        @Test func missingTracepointExits6() throws {
            let scratch = try ScratchDirectory()
            let probe = try write("""
                #include "vmlinux.h"
                #include <bpf/bpf_helpers.h>

                SEC("tracepoint/nosuchcategory/nosuchevent")
                int nowhere(void *ctx) { return 0; }

                char LICENSE[] SEC("license") = "GPL";
                """, named: "nowhere.c", in: scratch)
            let result = try Tool.run([probe, "-d", "1"], environment: environment)
            #expect(result.status == 6, "\(result.stderr)")
            #expect(result.stderr.contains("nosuchcategory"), "\(result.stderr)")
        }
    }
}

/// Issue 14: defects found by attacking kprobe-run, each refused with a message and its exit code.
/// None of these loads a program, so they run alongside the kernel suites.
@Suite(.enabled(if: isRoot, "gives a directory to another user: run as root"))
struct HardeningTests {
    static let probe = Tool.example("hello.c")
    static let archive = Tool.packageRoot + "/../shared/testkernel/kheaders.tar.xz"

    /// 14.1: a cache below a directory another user owns could be swapped while a compile runs.
    @Test func cacheBelowAnotherUsersDirectoryIsRefusedWithExit4() throws {
        let scratch = try ScratchDirectory()
        let theirs = scratch.path + "/theirs"
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: false)
        #expect(chown(theirs, 12345, 12345) == 0)
        let environment = ["KPROBE_RUN_CACHE_DIR": theirs + "/cache"]
        for arguments in [["headers", "fetch", "--headers", Self.archive],
                          ["compile", Self.probe, "-o", scratch.path + "/out.o"]] {
            let result = try Tool.run(arguments, environment: environment)
            #expect(result.status == 4, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("belongs to uid 12345"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: theirs + "/cache/headers"))
    }

    /// 14.2: `-o` names the output file; a FIFO or a device there is not replaced.
    @Test func compileOutputOverAFifoOrADeviceIsRefusedWithExit2() throws {
        let scratch = try ScratchDirectory()
        let fifo = scratch.path + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        for target in [fifo, "/dev/null", scratch.path] {
            let result = try Tool.run(["compile", Self.probe, "-o", target],
                                      environment: ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"])
            #expect(result.status == 2, "\(target): \(result.stderr)")
            #expect(result.stderr.contains("refusing to write the output to \(target)"), "\(result.stderr)")
        }
        var st = stat()
        #expect(lstat(fifo, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)
        #expect(lstat("/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
    }

    /// 14.3: an endless input is read up to a bound, then refused (4 for headers, 2 for a probe).
    @Test func endlessOrHugeInputsAreRefusedNotAllocated() throws {
        let scratch = try ScratchDirectory()
        let environment = ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"]
        let headers = try Tool.run(["headers", "fetch", "--headers", "/dev/zero"], environment: environment)
        #expect(headers.status == 4, "\(headers.stderr)")
        #expect(headers.stderr.contains("/dev/zero is larger than"), "\(headers.stderr)")
        #expect(!headers.uncaughtSignal)
        let huge = scratch.path + "/huge.c"
        #expect(FileManager.default.createFile(atPath: huge, contents: nil))
        #expect(truncate(huge, 65 << 20) == 0)
        let probe = try Tool.run(["compile", huge, "-o", scratch.path + "/out.o"], environment: environment)
        #expect(probe.status == 2, "\(probe.stderr)")
        #expect(probe.stderr.contains("far more than any probe"), "\(probe.stderr)")
    }

    /// 14.6: a damaged object says what is wrong with it (exit 2), not libbpf's "Unknown error
    /// 4001" (exit 1); a non-ELF file named .o is not compiled as C.
    @Test func damagedOrMisnamedObjectsSayWhatIsWrong() throws {
        let scratch = try ScratchDirectory()
        let environment = ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"]
        let object = scratch.path + "/hello.o"
        let compiled = try Tool.run(["compile", Self.probe, "-o", object], environment: environment)
        try #require(compiled.status == 0, "\(compiled.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: object))
        let cut = scratch.path + "/cut.o"
        try bytes.prefix(600).write(to: URL(fileURLWithPath: cut))
        let text = scratch.path + "/text.o"
        try Data("int main(void) { return 0; }\n".utf8).write(to: URL(fileURLWithPath: text))
        for (path, said) in [(cut, "is not a usable BPF object: its section headers cannot be read"),
                             (text, "is named like a compiled object but is not an ELF file"),
                             ("/bin/true", "not for BPF")] {
            let result = try Tool.run([path, "-d", "1"], environment: environment)
            #expect(result.status == 2, "\(path): \(result.stderr)")
            #expect(result.stderr.contains(said), "\(result.stderr)")
        }
    }
}
