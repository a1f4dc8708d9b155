import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// `kprobe-run compile PROBE.c -o OUT.o`: the compile half of a run, for later or elsewhere.
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a probe to a BPF object without attaching it.",
        discussion: """
            The object runs later with `kprobe-run OUT.o`, with no compiler work. With --verify every program \
            is also loaded into the running kernel (its verifier) and unloaded again, without attaching; \
            --verify alone needs no -o, and it checks an existing BPF object (any libbpf-style .o) as it is.
            """
    )

    @OptionGroup var source: ProbeSource

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the BPF object (optional with --verify).", valueName: "OUT.o"))
    var output: String?

    @Flag(name: .long, help: "Load every program into the running kernel's verifier, then unload it.")
    var verify = false

    @OptionGroup var compile: CompileOptions

    @OptionGroup var load: LoadFlags

    @OptionGroup var remote: AdbOptions

    func validate() throws {
        if output == nil && !verify {
            throw ValidationError("give the object's path with -o OUT.o (or check the probe with --verify alone)")
        }
    }

    func run() throws {
        if let output { try FileSystem.checkReplaceable(output) }
        if let serial = remote.requestedSerial {
            if verify {
                throw Failure(.usage, "--verify loads into this machine's kernel, not the device's; run the object on the device instead (kprobe-run --adb \(output ?? source.shownName))")
            }
            try write(AdbRun(serial: serial, compile: compile).compileOnly(source.load(), shownAs: source.shownName))
            return
        }
        let input = try source.load()
        let build = ProbeBuild(options: compile)
        guard verify else {
            guard case .source(let path, let text) = input else {
                // Compiling an object again means nothing; verifying one as it is (say a libbpf-tools .o) does.
                throw Failure(.usage, "\(source.shownName) is already a compiled object; run it with `kprobe-run \(source.shownName)`, or check it with `kprobe-run compile --verify \(source.shownName)`")
            }
            try write(build.compile(path: path, source: text).elf)
            return
        }
        let verbose = compile.verbose, loadOptions = try load.options()
        // An object is checked as it is; a probe's is the one the verifier accepted (maybe the fallback's).
        let (object, programs) = try build.loaded(input) { object in
            try ProgramVerifier.verify(object: object, name: input.name, options: loadOptions) { line in
                if verbose { Diagnostics.verbose(line) }
            }
        }
        if verbose {
            Diagnostics.verbose("verifier accepted \(programs.count) program(s): \(programs.joined(separator: ", "))")
        }
        try write(object)
    }

    private func write(_ object: [UInt8]) throws {
        guard let output else { return }
        do {
            try FileSystem.writeAtomically(object, to: output, mode: 0o644)
        } catch {
            throw Failure(error.isPermission ? .notPermitted : .usage, "cannot write \(output): \(error)")
        }
    }
}
