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

            Exit codes: 0 ok, 1 internal error, 2 usage, 3 compile error, 4 no kernel headers or types, \
            5 the kernel rejected the program, 6 attach failed, 7 not permitted.
            """,
        version: KprobeRunVersion.string,
        subcommands: [Run.self, Compile.self, Info.self, Headers.self, DeviceCommand.self, ListCommand.self],
        defaultSubcommand: Run.self
    )

    public init() {}

    /// Runs the command line and exits with the status that matches the failure (see `FailureKind`).
    public static func main(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try parseAsRoot(ListCommand.normalize(AdbOptions.normalize(arguments ?? Array(CommandLine.arguments.dropFirst()))))
            try command.run()
            Glibc.exit(0)
        } catch let error as any KprobeRunError {
            Diagnostics.error(error.message)
            Glibc.exit(error.kind.exitCode)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Glibc.exit(0)
            }
            if !message.isEmpty { Diagnostics.write(message + "\n") }
            // ArgumentParser reports usage errors as EX_USAGE (64); ours is 2 like other tools.
            Glibc.exit(code == .validationFailure ? FailureKind.usage.exitCode : code.rawValue)
        }
    }
}

/// Everything kprobe-run says to a person goes to stderr, so stdout carries only results.
enum Diagnostics {
    static func write(_ text: String) {
        try? FileSystem.writeAll(Array(text.utf8), to: 2)
    }

    static func error(_ message: String) { write("kprobe-run: error: \(message)\n") }
    static func verbose(_ message: String) { write("kprobe-run: \(message)\n") }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }
}
