import Foundation
import Testing
import TestSupport

extension EmulatedKernel {
    /// A phone is arm64: the static arm64 kprobe-run (cross-built here with a Swift SDK) on the arm64
    /// test kernel under qemu-system-aarch64, running probes compiled on this x86-64 machine for
    /// that kernel. One boot for every check (Tests/arm64/device.sh).
    @Suite(.serialized, .enabled(if: isRoot && Arm64VM.available, Arm64VM.missing))
    struct Arm64DeviceTests {
        @Test(.timeLimit(.minutes(20)))
        func staticBinaryFetchesHeadersAndRunsProbesCompiledHere() throws {
            let binary = try AndroidSim.buildStatic(machine: "aarch64")

            // The guest sees the package root, not this machine's /tmp.
            let objects = Tool.packageRoot + "/.build/arm64-vm-objects"
            try FileManager.default.createDirectory(atPath: objects, withIntermediateDirectories: true)
            let scratch = try ScratchDirectory()
            for (source, object) in [(Tool.example("vfsopen.c"), "vfsopen.o"),
                                     (Tool.packageRoot + "/Tests/arm64/openat-bcc.c", "openat-bcc.o")] {
                let compile = try Tool.run(["compile", "--headers", Arm64Headers.arm64, source, "-o", "\(objects)/\(object)", "-v"],
                                           environment: ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"])
                try #require(compile.status == 0, "\(compile.stderr)")
                #expect(compile.stderr.contains("[archive, arm64]"), "\(compile.stderr)")
            }

            let result = try VM.run(["sh", "Tests/arm64/device.sh", binary, objects], launcher: Arm64VM.runVM)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("PASS"), "\(result.output)")
        }

        /// `--adb` to an arm64 phone (Tests/android-arm64: the arm64 test kernel as a bare Android
        /// device behind an adb stand-in): the host installs the arm64 binary, fetches the device's
        /// headers once, compiles for arm64 and runs the probe there.
        @Test(.timeLimit(.minutes(20)))
        func adbInstallsTheArm64BinaryAndCompilesForTheDevice() throws {
            _ = try AndroidSim.buildStatic(machine: "aarch64")
            // No KPROBE_RUN_DEVICE_BINARY: kprobe-run picks kprobe-run-static-aarch64 for the device.
            let sim = try AndroidSim(staticBinary: nil, tools: Arm64VM.androidSim)
            defer { sim.stop() }

            let run = try sim.kprobeRun(["--adb", Tool.example("vfsopen.c"), "-d", "5", "-v"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("vfs_open "), "no events: \(run.stdout)\n\(run.stderr)")
            #expect(run.stderr.contains("/static/kprobe-run-static-aarch64 ("), "\(run.stderr)")
            #expect(run.stderr.contains("loaded the kheaders module from /system/lib/modules/kheaders.ko"), "\(run.stderr)")
            #expect(run.stderr.contains("unloaded the kheaders module again"), "\(run.stderr)")
            #expect(run.stderr.contains("[archive, arm64]"), "\(run.stderr)")
            #expect(try sim.state().contains("kheaders=unloaded kprobe-run=0"))
        }
    }
}

enum Arm64VM {
    static let runVM = Tool.packageRoot + "/../shared/arm64-testkernel/run-vm-arm64"
    static let sdk = Tool.packageRoot + "/../shared/swift-sdk-aarch64/aarch64-linux-glibc-static.artifactbundle.tar.xz"
    static let androidSim = Tool.packageRoot + "/Tests/android-arm64"
    static let missing: Comment = "needs root, ../shared/arm64-testkernel, ../shared/arm64-kheaders, qemu-system-aarch64 and cpio (qemu-system-arm, cpio), and a Swift SDK for aarch64 (../shared/swift-sdk-aarch64 or $SWIFT_SDK)"

    static var available: Bool {
        let environment = ProcessInfo.processInfo.environment
        let path = environment["PATH", default: ""].split(separator: ":")
        func onPath(_ tool: String) -> Bool { path.contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") } }
        return FileManager.default.isExecutableFile(atPath: runVM)
            && FileManager.default.fileExists(atPath: Arm64Headers.arm64)
            && (FileManager.default.fileExists(atPath: sdk) || !environment["SWIFT_SDK", default: ""].isEmpty)
            && onPath("qemu-system-aarch64") && onPath("cpio")
    }
}
