import Foundation
import Testing
import TestSupport

extension EmulatedKernel {
    /// Boots ../shared/android-sim as a bare phone-like device (no glibc, kheaders.ko under
    /// /system/lib/modules, tracefs unmounted) and drives it through its adb stand-in, once for the
    /// whole suite: the boot and the emulated device are slow, so every check shares one boot.
    @Suite(.serialized, .enabled(if: isRoot && AndroidSim.available, "needs root, qemu-system-x86_64, busybox-static (/bin/busybox, the bare device's toolbox) and ../shared/android-sim"))
    struct AndroidTests {
        @Test(.timeLimit(.minutes(20)))
        func tracesTheDeviceOverAdbAndInItsShell() throws {
            let staticBinary = try AndroidSim.buildStatic()
            let sim = try AndroidSim(staticBinary: staticBinary)
            defer { sim.stop() }

            // 1. First run: installs the device side, fetches the headers once (the device loads
            //    kheaders from /system/lib/modules and unloads it), compiles here, prints events.
            let first = try sim.kprobeRun(["--adb", Tool.example("vfsopen.c"), "-d", "5", "-v"])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("vfs_open "), "no events: \(first.stdout)\n\(first.stderr)")
            #expect(first.stderr.contains("installed "), "\(first.stderr)")
            #expect(first.stderr.contains("loaded the kheaders module from /system/lib/modules/kheaders.ko"), "\(first.stderr)")
            #expect(first.stderr.contains("unloaded the kheaders module again"), "\(first.stderr)")
            #expect(try sim.state().contains("kheaders=unloaded kprobe-run=0"))

            // 2. Second run: nothing installed, no headers fetched, no module loaded.
            let second = try sim.kprobeRun(["--adb", Tool.example("vfsopen.c"), "-d", "5", "-v"])
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout.contains("vfs_open "), "no events: \(second.stdout)\n\(second.stderr)")
            #expect(second.stderr.contains("nothing fetched"), "\(second.stderr)")
            #expect(!second.stderr.contains("installed "), "\(second.stderr)")
            #expect(!second.stderr.contains("kheaders module"), "\(second.stderr)")
            #expect(try sim.state().contains("kheaders=unloaded kprobe-run=0"))

            // 3. SIGTERM to the host mid-run stops the device side, which detaches and exits.
            let stopped = try sim.kprobeRun(["--adb", Tool.example("vfsopen.c"), "-v"], terminateOnOutput: "vfs_open ")
            #expect(stopped.stdout.contains("vfs_open "), "\(stopped.stderr)")
            #expect(stopped.status == 0, "\(stopped.stderr)")
            #expect(try sim.state().contains("kprobe-run=0"), "a kprobe-run process is left on the device")

            // 4. In an adb shell: the static binary runs a pushed object and mounts tracefs itself.
            let object = sim.scratch + "/vfsopen-device.o"
            let compiled = try sim.kprobeRun(["compile", "--adb", Tool.example("vfsopen.c"), "-o", object])
            #expect(compiled.status == 0, "\(compiled.stderr)")
            try sim.adb(["push", object, "/data/local/tmp/vfsopen-device.o"])
            // One stream: the adb stand-in copies stdout and stderr separately and may cut either short.
            let direct = try sim.adb(["shell", "exec 2>&1; umount /sys/kernel/tracing; /data/local/tmp/kprobe-run/kprobe-run /data/local/tmp/vfsopen-device.o -d 5 -v"])
            #expect(direct.status == 0, "\(direct.output)")
            #expect(direct.output.contains("mounted tracefs"), "\(direct.output)")
            #expect(direct.output.contains("vfs_open "), "\(direct.output)")
            #expect(try sim.state().contains("kprobe-run=0"))
        }
    }
}

/// A phone is usually arm64: its headers must be parsed with an aarch64 front end and the probe's
/// register reads must follow arm64's pt_regs. No device needed: only the header archive.
@Suite(.enabled(if: Arm64Headers.available, "needs ../shared/arm64-kheaders and ../shared/testkernel"))
struct Arm64CompileTests {
    @Test(.timeLimit(.minutes(5)))
    func registerReadsFollowTheHeadersArchitecture() throws {
        let scratch = try ScratchDirectory()
        let environment = ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"]
        var offsets: [String: Int16] = [:]
        for (name, archive) in [("arm64", Arm64Headers.arm64), ("x86", Arm64Headers.x86)] {
            let object = scratch.path + "/vfsopen-\(name).o"
            let result = try Tool.run(["compile", "--headers", archive, Tool.example("vfsopen.c"), "-o", object, "-v"],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("[archive, \(name)]"), "\(result.stderr)")
            let elf = try Data(contentsOf: URL(fileURLWithPath: object))
            offsets[name] = try BPFObject.firstContextLoad(in: elf, section: "kprobe/vfs_open")
        }
        // PT_REGS_PARM1: arm64 reads regs[0] (offset 0), x86-64 reads di (offset 112).
        #expect(offsets["arm64"] == 0)
        #expect(offsets["x86"] == 112)
    }
}

enum Arm64Headers {
    static let arm64 = Tool.packageRoot + "/../shared/arm64-kheaders/kheaders.tar.xz"
    static let x86 = Tool.packageRoot + "/../shared/testkernel/kheaders.tar.xz"
    static var available: Bool {
        FileManager.default.fileExists(atPath: arm64) && FileManager.default.fileExists(atPath: x86)
    }
}

/// Just enough ELF and BPF decoding to see where a program reads its context.
enum BPFObject {
    /// The offset of the program's first 64-bit load through r1, the context (struct pt_regs *).
    static func firstContextLoad(in elf: Data, section wanted: String) throws -> Int16? {
        let bytes = [UInt8](elf)
        func integer(_ at: Int, _ size: Int) -> Int {
            (0..<size).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) }
        }
        guard bytes.count > 64, bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]), bytes[4] == 2, bytes[5] == 1 else {
            throw TestFailure("not a 64-bit little-endian ELF object")
        }
        let sectionHeaders = integer(0x28, 8), entrySize = integer(0x3a, 2), count = integer(0x3c, 2), names = integer(0x3e, 2)
        func header(_ index: Int) -> (name: Int, offset: Int, size: Int) {
            let at = sectionHeaders + index * entrySize
            return (integer(at, 4), integer(at + 0x18, 8), integer(at + 0x20, 8))
        }
        let nameTable = header(names).offset
        for index in 0..<count {
            let section = header(index)
            let nameBytes = bytes[(nameTable + section.name)...].prefix { $0 != 0 }
            guard String(decoding: nameBytes, as: UTF8.self) == wanted else { continue }
            for at in stride(from: section.offset, to: section.offset + section.size, by: 8) {
                // BPF_LDX | BPF_MEM | BPF_DW is 0x79; the source register is the high nibble.
                if bytes[at] == 0x79, bytes[at + 1] >> 4 == 1 {
                    return Int16(bitPattern: UInt16(bytes[at + 2]) | UInt16(bytes[at + 3]) << 8)
                }
            }
            return nil
        }
        throw TestFailure("no section \(wanted) in the object")
    }
}

/// One booted simulated device with a private state directory, and kprobe-run pointed at it.
final class AndroidSim {
    static let tools = Tool.packageRoot + "/../shared/android-sim"

    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: tools + "/device")
            && FileManager.default.isExecutableFile(atPath: "/bin/busybox")
            && ProcessInfo.processInfo.environment["PATH", default: ""].split(separator: ":")
                .contains { FileManager.default.isExecutableFile(atPath: "\($0)/qemu-system-x86_64") }
    }

    let scratch: String
    let environment: [String: String]
    /// The stand-in's folder (`device`, `adb`): the x86-64 one in ../shared, or Tests/android-arm64.
    let tools: String
    private var running = false

    /// Builds (or brings up to date) the static device-side kprobe-run for `machine` with
    /// `make static`'s script (cross-built when it is not this machine's).
    static func buildStatic(machine: String = "x86_64") throws -> String {
        let result = try Command.run(["/bin/bash", Tool.packageRoot + "/scripts/build-static", machine], timeout: 1200)
        try #require(result.status == 0, "scripts/build-static \(machine) failed: \(result.output)")
        return Tool.packageRoot + "/.build/static/kprobe-run-static-\(machine)"
    }

    /// `staticBinary` nil: kprobe-run finds the device binary itself (.build/static).
    init(staticBinary: String?, tools: String = AndroidSim.tools) throws {
        self.tools = tools
        let scratchDirectory = try ScratchDirectory()
        scratch = scratchDirectory.path
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = tools + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        env["ANDROID_SIM_DIR"] = scratch + "/sim"
        env["KPROBE_RUN_CACHE_DIR"] = scratch + "/cache"
        env["KPROBE_RUN_DEVICE_BINARY"] = staticBinary
        env.removeValue(forKey: "ANDROID_SERIAL")
        environment = env
        keep = scratchDirectory
        let boot = try Command.run([tools + "/device", "start", "--bare", "--timeout", "900"], environment: env, timeout: 180)
        guard boot.status == 0 else {
            throw TestFailure("the simulated device did not boot: \(boot.output)")
        }
        running = true
        try adb(["push", Tool.packageRoot + "/Tests/android/state.sh", "/data/local/tmp/state.sh"])
    }

    private let keep: ScratchDirectory

    func stop() {
        guard running else { return }
        running = false
        _ = try? Command.run([tools + "/device", "stop"], environment: environment, timeout: 60)
    }

    @discardableResult
    func adb(_ arguments: [String], timeout: Double = 120) throws -> Command.Result {
        try Command.run([tools + "/adb"] + arguments, environment: environment, timeout: timeout)
    }

    func state() throws -> String {
        try adb(["shell", "sh /data/local/tmp/state.sh"]).output
    }

    /// Runs the host's kprobe-run; with `terminateOnOutput` sends it SIGTERM once stdout shows that.
    func kprobeRun(_ arguments: [String], terminateOnOutput: String? = nil, timeout: Double = 240) throws -> Tool.Result {
        var terminated = false
        return try Tool.run(arguments, completeEnvironment: environment, timeout: timeout, interval: 0.1) { process, collected in
            if let marker = terminateOnOutput, !terminated, collected.strings.0.contains(marker) {
                process.terminate()
                terminated = true
            }
        }
    }
}

/// A helper command with a deadline, its stdout and stderr together.
enum Command {
    struct Result {
        var status: Int32
        var output: String
    }

    /// Spawned directly and reaped with waitpid, its output through a file: `device start` leaves
    /// QEMU running in the background, which would inherit (and hold open) the pipes and the exit
    /// notification Foundation's Process uses.
    static func run(_ argv: [String], environment: [String: String]? = nil, timeout: Double) throws -> Result {
        let outputPath = NSTemporaryDirectory() + "kprobe-run-android-" + UUID().uuidString
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        // Test threads block most signals, and a child would inherit that: the adb stand-in could
        // then never stop its helpers.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, cArgv, cEnv)
        guard spawned == 0 else { throw TestFailure("cannot run \(argv[0]): error \(spawned)") }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code, output: text)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
