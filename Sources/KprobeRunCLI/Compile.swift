import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// `kprobe-run compile PROBE.c -o OUT.o`: the compile half of a run, for later or elsewhere.
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a probe to a BPF object without attaching it.",
        discussion: """
            The object runs later with `kprobe-run OUT.o`, with no compiler work. With --verify every program \
            is also loaded into the running kernel (its verifier) and unloaded again, without attaching.
            """
    )

    @OptionGroup var source: ProbeSource

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the BPF object.", valueName: "OUT.o"))
    var output: String

    @Flag(name: .long, help: "Load every program into the running kernel's verifier, then unload it.")
    var verify = false

    @OptionGroup var compile: CompileOptions

    @OptionGroup var load: LoadFlags

    @OptionGroup var remote: AdbOptions

    func run() throws {
        try FileSystem.checkReplaceable(output)
        if let serial = remote.requestedSerial {
            if verify {
                throw Failure(.usage, "--verify loads into this machine's kernel, not the device's; run the object on the device instead (kprobe-run --adb \(output))")
            }
            try write(AdbRun(serial: serial, compile: compile).compileOnly(source.load(), shownAs: source.shownName))
            return
        }
        let input = try source.load()
        guard case .source(let path, let text) = input else {
            throw Failure(.usage, "\(source.shownName) is already a compiled object; run it with `kprobe-run \(source.shownName)`")
        }
        let build = ProbeBuild(options: compile)
        guard verify else {
            try write(build.compile(path: path, source: text).elf)
            return
        }
        let verbose = compile.verbose, loadOptions = try load.options()
        // The object written is the one the verifier accepted (it may be the fallback's).
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
        do {
            try FileSystem.writeAtomically(object, to: output, mode: 0o644)
        } catch {
            throw Failure(error.isPermission ? .notPermitted : .usage, "cannot write \(output): \(error)")
        }
    }
}
