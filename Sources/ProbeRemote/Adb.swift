import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The host's adb client, run as a child process for each step.
public struct Adb: Sendable {
    /// The adb executable: $ADB, else the first `adb` on PATH.
    public var executable: String
    /// The device every command goes to (`adb -s SERIAL`); nil while only one device is attached.
    public var serial: String?

    public init(executable: String, serial: String?) {
        self.executable = executable
        self.serial = serial
    }

    /// Finds the adb client; the error says where to get it.
    public static func locate(environment: [String: String] = Environment.current) throws(RemoteError) -> String {
        if let explicit = environment["ADB"], !explicit.isEmpty {
            guard access(explicit, X_OK) == 0 else {
                throw RemoteError(.usage, "$ADB is \(explicit), which is not an executable file")
            }
            return explicit
        }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = String(directory) + "/adb"
            if access(candidate, X_OK) == 0, FileSystem.isRegularFile(candidate) { return candidate }
        }
        throw RemoteError(.usage, "--adb needs the adb client, and there is none on PATH; install it (Debian: apt install adb; or Android SDK platform-tools) or set ADB to its path")
    }

    /// Picks the device: the serial asked for (or $ANDROID_SERIAL), else the only one attached.
    public static func connect(serial requested: String?, environment: [String: String] = Environment.current) throws(RemoteError) -> Adb {
        let executable = try locate(environment: environment)
        let wanted = requested.flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["ANDROID_SERIAL"].flatMap { $0.isEmpty ? nil : $0 }
        let listing = try capture([executable, "devices"])
        guard listing.status == 0 else {
            throw RemoteError(.internal, "`adb devices` failed (status \(listing.status)): \(listing.errors.trimmingSpaces)")
        }
        let devices = parseDevices(String(decoding: listing.output, as: UTF8.self))
        if let wanted {
            guard let state = devices.first(where: { $0.serial == wanted })?.state else {
                let known = devices.isEmpty ? "none are attached" : "attached: " + devices.map(\.serial).joined(separator: ", ")
                throw RemoteError(.usage, "no device '\(wanted)' (\(known)); check `adb devices`")
            }
            try checkState(state, serial: wanted)
            return Adb(executable: executable, serial: wanted)
        }
        switch devices.count {
        case 0:
            throw RemoteError(.usage, "no Android device found: `adb devices` lists none; connect one with USB debugging enabled (or start an emulator)")
        case 1:
            try checkState(devices[0].state, serial: devices[0].serial)
            return Adb(executable: executable, serial: devices[0].serial)
        default:
            throw RemoteError(.usage, "several devices are attached (\(devices.map(\.serial).joined(separator: ", "))); pick one with --adb SERIAL or ANDROID_SERIAL")
        }
    }

    private static func checkState(_ state: String, serial: String) throws(RemoteError) {
        switch state {
        case "device": return
        case "unauthorized":
            throw RemoteError(.notPermitted, "device \(serial) has not authorised this computer: accept the USB debugging prompt on the phone")
        default:
            throw RemoteError(.usage, "device \(serial) is \(state), not ready; wait for it (adb wait-for-device) or reconnect it")
        }
    }

    /// `adb devices` lines after the header: "SERIAL<TAB>STATE".
    static func parseDevices(_ text: String) -> [(serial: String, state: String)] {
        var result: [(serial: String, state: String)] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("List of devices") && !line.hasPrefix("*") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if fields.count >= 2 { result.append((String(fields[0]), String(fields[1]))) }
        }
        return result
    }

    func argv(_ arguments: [String]) -> [String] {
        [executable] + (serial.map { ["-s", $0] } ?? []) + arguments
    }

    /// What an adb command wrote and how it ended (128 + signal when a signal ended it).
    struct Captured {
        var status: Int32
        var output: [UInt8]
        var errors: String
    }

    /// Runs `argv` to the end, collecting stdout (all of it) and stderr (the start of it).
    static func capture(_ argv: [String]) throws(RemoteError) -> Captured {
        do {
            let outcome = try ChildProcess.run(argv, stdout: .all, stderr: .head(65536))
            return Captured(status: outcome.status.code, output: outcome.stdout, errors: String(decoding: outcome.stderr, as: UTF8.self))
        } catch {
            throw RemoteError(.internal, "cannot run \(argv[0]): \(error)")
        }
    }

    /// Starts `argv`, with errors that say which program could not be started.
    private static func spawn(_ argv: [String], stdout: ChildProcess.Stream = .inherit,
                              ownProcessGroup: Bool = false) throws(RemoteError) -> pid_t {
        do {
            return try ChildProcess.spawn(argv, stdout: stdout, ownProcessGroup: ownProcessGroup)
        } catch {
            throw RemoteError(.internal, "cannot run \(argv[0]): \(error)")
        }
    }

    /// The exit code of `pid` (128 + N when signal N ended it; 128 when it cannot be waited for).
    private static func wait(_ pid: pid_t) -> Int32 {
        (try? ChildProcess.wait(pid))?.code ?? 128
    }

    /// Runs a shell command on the device and collects its output.
    func shell(_ command: String) throws(RemoteError) -> Captured {
        try Self.capture(argv(["shell", command]))
    }

    /// Runs a command on the device, writing its stdout byte for byte to `fd`; returns its status
    /// and its stderr, which `adb exec-out` drops, so the command must keep it on the device.
    func execOut(_ command: String, into fd: Int32) throws(RemoteError) -> Int32 {
        return Self.wait(try Self.spawn(argv(["exec-out", command]), stdout: .descriptor(fd)))
    }

    func push(_ local: String, to remote: String) throws(RemoteError) {
        let result = try Self.capture(argv(["push", local, remote]))
        guard result.status == 0 else {
            throw RemoteError(.internal, "adb push \(local) \(remote) failed (status \(result.status)): \(result.errors.trimmingSpaces)")
        }
    }

    /// Runs a shell command on the device with its stdout and stderr passed straight through, the
    /// host's stop signals forwarded to it; returns its status and the signal that stopped it.
    func stream(_ command: String) throws(RemoteError) -> (status: Int32, stoppedBy: Int32?) {
        let forwarder = SignalForwarder()
        defer { forwarder.restore() }
        let pid = try Self.spawn(argv(["shell", command]), ownProcessGroup: true)
        forwarder.target(pid)
        let status = Self.wait(pid)
        return (status, forwarder.received)
    }
}
