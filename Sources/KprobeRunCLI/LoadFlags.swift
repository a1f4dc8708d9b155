import ArgumentParser
import ProbeRuntime

/// What a libbpf-tools tool's userspace decides before load, as flags: map sizes, `const volatile`
/// parameters, which programs load. Shared by `run`, `compile --verify` and `info`.
struct LoadFlags: ParsableArguments {
    @Option(name: .customLong("map-size"), help: ArgumentHelp(
        "Set a map's max_entries (bytes for a ring buffer) (repeatable). Maps the source leaves at 0 get defaults (see README).",
        valueName: "MAP=N"))
    var mapSizes: [String] = []

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Set a global of the probe before load, e.g. a 'const volatile' parameter: integers, booleans, enums, strings into char arrays (repeatable; `kprobe-run info` lists them).",
        valueName: "NAME=VALUE"))
    var settings: [String] = []

    @Option(name: .customLong("only"), help: ArgumentHelp("Load only this program (repeatable).", valueName: "PROG"))
    var only: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Do not load this program (repeatable).", valueName: "PROG"))
    var skip: [String] = []

    /// These flags as `run` takes them, for the device side of --adb (see `Run.deviceArguments`).
    var deviceArguments: [String] {
        mapSizes.flatMap { ["--map-size", $0] } + settings.flatMap { ["--set", $0] }
            + only.flatMap { ["--only", $0] } + skip.flatMap { ["--skip", $0] }
    }

    func options() throws -> LoadOptions {
        var options = LoadOptions()
        for text in mapSizes { try options.addMapSize(text) }
        for text in settings { options.parameters.append(try LoadOptions.Setting(parsing: text, flag: "--set")) }
        options.only = only
        options.skip = skip
        return options
    }
}
