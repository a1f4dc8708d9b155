import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// `kprobe-run info PROBE`: the programs, maps and settable parameters of a probe.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a probe's programs (and which load on this kernel), maps and the parameters --set can change.",
        discussion: """
            A C source is compiled first (as `run` would); nothing is loaded into the kernel. \
            The map sizes shown are those a run uses, after defaults and --map-size.
            """
    )

    @Argument(help: ArgumentHelp("The probe: C source, or a BPF object from `kprobe-run compile`.", valueName: "PROBE"))
    var probe: String

    @OptionGroup var load: LoadFlags

    @OptionGroup var compile: CompileOptions

    func run() throws {
        let options = try load.options()
        let input = try ProbeInput.load(probe)
        let object = try ProbeBuild(options: compile).object(for: input)
        for line in try ObjectInfo.describe(object: object, name: input.name, options: options) {
            print(line)
        }
    }
}
