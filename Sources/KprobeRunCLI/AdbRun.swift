import KernelHeaders
import KprobeSupport
import ProbeRemote
import ProbeRuntime

/// `--adb`: headers from the device (fetched once per device kernel), the compile here for the
/// device's architecture, and the run there, its output streamed back.
struct AdbRun {
    var serial: String
    var compile: CompileOptions

    private var log: @Sendable (String) -> Void {
        let verbose = compile.verbose
        return { line in if verbose { Diagnostics.verbose(line) } }
    }

    /// The object for the device: a compiled .o as it is, C compiled against the device's headers
    /// (or --headers, which then must be that device kernel's; $KPROBE_RUN_HEADERS names this
    /// machine's headers, so it does not count here).
    func object(for input: ProbeInput, on device: DeviceTarget) throws -> [UInt8] {
        switch input {
        case .object(let path, let bytes):
            log("\(path) is a compiled object: no compile")
            return bytes
        case .source(let path, let text):
            var options = compile
            if options.headers == nil {
                options.headers = try device.headerArchive(cache: CacheRoot.resolve(), keepModule: compile.keepModule)
            }
            return try ProbeBuild(options: options, arch: device.arch).compile(path: path, source: text).elf
        }
    }

    /// `kprobe-run --adb PROBE …`: ends with the device side's status. `arguments` are the run
    /// options as `Run.deviceArguments` gives them. -p and -c name a process on the device; with
    /// -p its pid is also the probe's KPROBE_RUN_PID here.
    func run(_ input: ProbeInput, pid: Int32?, arguments: [String]) throws -> Never {
        let device = try DeviceTarget.prepare(serial: serial, log: log)
        var build = self
        build.compile.defines += RunOptions.compileDefines(pid: pid)
        let object = try build.object(for: input, on: device)
        let status = try device.run(object: object, name: input.name, arguments: arguments, stagingCache: CacheRoot.resolve())
        throw ExitStatus(code: status)
    }

    /// `kprobe-run compile --adb PROBE.c -o OUT.o`: the object for that device, nothing run.
    func compileOnly(_ input: ProbeInput, shownAs probe: String) throws -> [UInt8] {
        guard case .source = input else {
            throw Failure(.usage, "\(probe) is already a compiled object; run it with `kprobe-run --adb \(serial.isEmpty ? "" : serial + " ")\(probe)`")
        }
        let device = try DeviceTarget.prepare(serial: serial, log: log)
        return try object(for: input, on: device)
    }
}
