import Foundation
import Testing

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
        let direct = try sim.adb(["shell", "umount /sys/kernel/tracing; /data/local/tmp/kprobe-run/kprobe-run /data/local/tmp/vfsopen-device.o -d 5 -v"])
        #expect(direct.status == 0, "\(direct.output)")
        #expect(direct.output.contains("mounted tracefs"), "\(direct.output)")
        #expect(direct.output.contains("vfs_open "), "\(direct.output)")
        #expect(try sim.state().contains("kprobe-run=0"))
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
    private var running = false

    /// Builds (or brings up to date) the static device-side kprobe-run with `make static`'s script.
    static func buildStatic() throws -> String {
        let result = try Command.run(["/bin/bash", Tool.packageRoot + "/scripts/build-static"], timeout: 900)
        #expect(result.status == 0, "scripts/build-static failed: \(result.output)")
        return Tool.packageRoot + "/.build/static/kprobe-run-static-x86_64"
    }

    init(staticBinary: String) throws {
        let scratchDirectory = try ScratchDirectory()
        scratch = scratchDirectory.path
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = AndroidSim.tools + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        env["ANDROID_SIM_DIR"] = scratch + "/sim"
        env["KPROBE_RUN_CACHE_DIR"] = scratch + "/cache"
        env["KPROBE_RUN_DEVICE_BINARY"] = staticBinary
        env.removeValue(forKey: "ANDROID_SERIAL")
        environment = env
        keep = scratchDirectory
        let boot = try Command.run([AndroidSim.tools + "/device", "start", "--bare", "--timeout", "900"], environment: env, timeout: 180)
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
        _ = try? Command.run([AndroidSim.tools + "/device", "stop"], environment: environment, timeout: 60)
    }

    @discardableResult
    func adb(_ arguments: [String], timeout: Double = 120) throws -> Command.Result {
        try Command.run([AndroidSim.tools + "/adb"] + arguments, environment: environment, timeout: timeout)
    }

    func state() throws -> String {
        try adb(["shell", "sh /data/local/tmp/state.sh"]).output
    }

    /// Runs the host's kprobe-run; with `terminateOnOutput` sends it SIGTERM once stdout shows that.
    func kprobeRun(_ arguments: [String], terminateOnOutput: String? = nil, timeout: Double = 240) throws -> Tool.Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tool.binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: Tool.packageRoot)
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let collected = Command.Collected()
        out.fileHandleForReading.readabilityHandler = { collected.append($0.availableData, toError: false) }
        err.fileHandleForReading.readabilityHandler = { collected.append($0.availableData, toError: true) }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var terminated = false
        while process.isRunning {
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                break
            }
            if let marker = terminateOnOutput, !terminated, collected.strings.0.contains(marker) {
                process.terminate()
                terminated = true
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        process.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        collected.append(out.fileHandleForReading.readDataToEndOfFile(), toError: false)
        collected.append(err.fileHandleForReading.readDataToEndOfFile(), toError: true)
        let (stdout, stderr) = collected.strings
        return Tool.Result(status: process.terminationStatus, stdout: stdout, stderr: stderr,
                           uncaughtSignal: process.terminationReason == .uncaughtSignal)
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
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgv, cEnv)
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

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var out = Data(), err = Data()
        func append(_ data: Data, toError: Bool) {
            lock.lock()
            defer { lock.unlock() }
            if toError { err.append(data) } else { out.append(data) }
        }
        var strings: (String, String) {
            lock.lock()
            defer { lock.unlock() }
            return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
