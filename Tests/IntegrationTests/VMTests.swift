import Foundation
import Testing
import TestSupport

extension EmulatedKernel {
    /// Boots ../shared/testkernel (Linux 6.1: kheaders as a module, kprobes, no BTF) under QEMU and runs
    /// the real binary there. Slow (software emulation), so few and purposeful.
    @Suite(.serialized, .enabled(if: isRoot && VM.available, "needs root and ../shared/testkernel with qemu-system-x86"))
    struct VMTests {
        @Test(.timeLimit(.minutes(20)))
        func kheadersLoadedUnpackedCompiledAndUnloaded() throws {
            let result = try VM.run(["bash", "Tests/vm/kheaders-first-run.sh", Tool.binary])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("PASS"), "\(result.output)")
        }

        /// BCC tools' programs compiled here, unchanged, against the test kernel's headers; run there
        /// with the attach points their Python code would give.
        @Test(.timeLimit(.minutes(20)))
        func bccKprobeToolsRunUnchanged() throws {
            let objects = Tool.packageRoot + "/.build/vm-bcc-objects"
            try FileManager.default.createDirectory(atPath: objects, withIntermediateDirectories: true)
            for tool in ["execsnoop", "killsnoop"] {
                let compile = try Tool.run([
                    "compile", "--dialect", "bcc", "--headers", VM.testKernel + "/kheaders.tar.xz",
                    Tool.packageRoot + "/../shared/bcc-corpus/\(tool).c", "-o", "\(objects)/\(tool).o",
                ])
                try #require(compile.status == 0, "\(compile.stderr)")
            }
            // Tools of the installed bpfcc-tools (the generated corpus, when BCC's tools are here),
            // attached where the tool's Python attached them.
            if BCCTools.available {
                let corpus = try BCCTools.corpus()
                for tool in ["opensnoop", "vfsstat"] {
                    let compile = try Tool.run([
                        "compile", "--dialect", "bcc", "--headers", VM.testKernel + "/kheaders.tar.xz",
                        corpus + "/\(tool).c", "-o", "\(objects)/corpus-\(tool).o",
                    ])
                    try #require(compile.status == 0, "\(compile.stderr)")
                    try BCCTools.attachArguments(tool: tool, corpus: corpus).joined(separator: "\n")
                        .write(toFile: "\(objects)/corpus-\(tool).args", atomically: true, encoding: .utf8)
                }
            }
            let result = try VM.run(["bash", "Tests/vm/bcc-kprobes.sh", Tool.binary, objects])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("PASS"), "\(result.output)")
        }
    }
}

enum VM {
    static let testKernel = Tool.packageRoot + "/../shared/testkernel"
    static let runVM = testKernel + "/run-vm"

    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: runVM)
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64")
    }

    /// Runs `command` in a fresh boot with the package root as the writable work directory;
    /// `launcher` is the test kernel's run-vm script (the x86-64 one unless given).
    /// A guest that never reports (run-vm's 124: timed out, 125: no status) is booted once more:
    /// under software emulation on a loaded host a guest CPU can stop getting timer interrupts
    /// (its console fills with RCU stall reports and everything waiting for a grace period hangs),
    /// which says nothing about the command. A command that hangs hangs twice and still fails.
    static func run(_ command: [String], timeout: Int = 540, launcher: String = runVM) throws -> (status: Int32, output: String) {
        let arguments = [launcher, "--timeout", String(timeout), "--work", Tool.packageRoot, "--"] + command
        let first = try runCollecting(arguments, directory: Tool.packageRoot)
        guard first.status == 124 || first.status == 125 else { return first }
        let second = try runCollecting(arguments, directory: Tool.packageRoot)
        return (second.status, "first boot never reported (\(first.status)):\n\(first.output)\nsecond boot:\n\(second.output)")
    }
}
