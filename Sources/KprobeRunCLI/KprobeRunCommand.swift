import ArgumentParser
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `kprobe-run` command tree. `run` is the default, so `kprobe-run probe.c` works.
public struct KprobeRunCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kprobe-run",
        abstract: "Compile a C eBPF probe against the running kernel's headers, attach it, and print what it reports.",
        discussion: """
            Kernel headers come from the kernel itself (/sys/kernel/kheaders.tar.xz, loading the kheaders \
            module when needed), /lib/modules/$(uname -r)/build, or BTF, and are unpacked once into a private \
            per-kernel cache. Probes are compiled with clang/LLVM 14's libraries; no clang binary is needed.

            Exit codes: \(FailureKind.summary).
            """,
        version: KprobeRunVersion.string,
        subcommands: [Run.self, Compile.self, Info.self, Headers.self, CacheCommand.self, Doctor.self, DeviceCommand.self, ListCommand.self],
        defaultSubcommand: Run.self
    )

    public init() {}

    /// Runs the command line and exits with the status that matches the failure (see `FailureKind`).
    public static func main(_ arguments: [String]? = nil) -> Never {
        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        let outcome = execute(arguments)
        if !outcome.stdout.isEmpty { print(outcome.stdout) }
        if !outcome.stderr.isEmpty { Diagnostics.write(outcome.stderr + "\n") }
        Glibc.exit(outcome.status)
    }

    /// What a command line ends with: its exit status and the messages that go with it. Commands
    /// write their results themselves; this carries only what the parser and errors say.
    struct Outcome: Equatable {
        var status: Int32
        var stdout = ""
        var stderr = ""
    }

    static func execute(_ arguments: [String]) -> Outcome {
        if arguments == ["--version"] { return Outcome(status: 0, stdout: VersionReport.current().text) }
        do {
            try checkHelpTopic(arguments)
            var command = try parse(arguments)
            try command.run()
            return Outcome(status: 0)
        } catch let exit as ExitStatus {
            return Outcome(status: exit.code)
        } catch let error as any KprobeRunError {
            return Outcome(status: error.kind.exitCode, stderr: "kprobe-run: error: \(error.message)")
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success { return Outcome(status: 0, stdout: message) }
            // ArgumentParser reports usage errors as EX_USAGE (64); ours is 2 like other tools.
            return Outcome(status: code == .validationFailure ? FailureKind.usage.exitCode : code.rawValue, stderr: message)
        }
    }

    /// The command line as the parser sees it: `--adb` and `-l` given their optional values first,
    /// cc's joined `-DNAME`/`-IDIR` split.
    static func parse(_ arguments: [String]) throws -> ParsableCommand {
        try parseAsRoot(CompileOptions.normalize(ListCommand.normalize(AdbOptions.normalize(arguments))))
    }

    /// The names of the subcommands, for telling a subcommand from a probe or a serial.
    static var subcommandNames: [String] {
        configuration.subcommands.map { $0._commandName } + ["help"]
    }

    /// `kprobe-run help NAME…` for a NAME that is no command would print the top-level help and
    /// exit 0; a typo there is a usage error like any other.
    private static func checkHelpTopic(_ arguments: [String]) throws {
        guard arguments.first == "help" else { return }
        var commands = configuration.subcommands
        for name in arguments.dropFirst() where !name.hasPrefix("-") {
            guard let command = commands.first(where: { $0._commandName == name }) else {
                let known = commands.filter { $0.configuration.shouldDisplay }.map { $0._commandName }
                throw Failure(.usage, "help \(name): no such command; the commands are \(known.joined(separator: ", "))")
            }
            commands = command.configuration.subcommands
        }
    }
}

/// A status to end with that is not a failure of kprobe-run's: the device side's over --adb, the
/// `-c` command's with --exit-with-command.
struct ExitStatus: Error {
    var code: Int32
}

/// Everything kprobe-run says to a person goes to stderr, so stdout carries only results.
enum Diagnostics {
    static func write(_ text: String) {
        try? FileSystem.writeAll(Array(text.utf8), to: 2)
    }

    static func verbose(_ message: String) { write("kprobe-run: \(message)\n") }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }
}
