import ArgumentParser
import KprobeSupport

/// `--adb [SERIAL]`: compile here, run on an Android device. ArgumentParser has no option with an
/// optional value, so `KprobeRunCommand.main` rewrites a bare `--adb` to `--adb=-` first (an empty
/// `--adb=` would take the next word as its value).
struct AdbOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Compile here, run on an Android device over adb (SERIAL may be left out: then $ANDROID_SERIAL, else the only device attached).",
        valueName: "SERIAL"))
    var adb: String?

    static let defaultDevice = "-"

    /// The serial asked for ("" for the default device), or nil without --adb.
    var requestedSerial: String? { adb.map { $0 == Self.defaultDevice ? "" : $0 } }

    /// Rewrites `--adb` without a value to `--adb=-`, and `--adb SERIAL` to `--adb=SERIAL`. The
    /// word after `--adb` is its serial unless it is an option, a subcommand, or the probe
    /// (an existing file, or a name ending in .c or .o).
    static func normalize(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                result += arguments[index...]
                break
            }
            guard argument == "--adb" else {
                result.append(argument)
                index += 1
                continue
            }
            if index + 1 < arguments.count, isSerial(arguments[index + 1]) {
                result.append("--adb=" + arguments[index + 1])
                index += 2
            } else {
                result.append("--adb=" + defaultDevice)
                index += 1
            }
        }
        return result
    }

    static func isSerial(_ word: String) -> Bool {
        if word.isEmpty || word.hasPrefix("-") { return false }
        if KprobeRunCommand.subcommandNames.contains(word) { return false }
        if word.hasSuffix(".c") || word.hasSuffix(".o") || word.hasSuffix(".bpf.c") { return false }
        return !FileSystem.exists(word)
    }
}
