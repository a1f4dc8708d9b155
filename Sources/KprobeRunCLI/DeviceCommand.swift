import ArgumentParser
import KernelHeaders
import KprobeSupport
import ProbeRemote

#if canImport(Glibc)
import Glibc
#endif

/// `kprobe-run device …`: what the host runs on an Android device over adb (hidden: people use
/// `--adb`). Only the static, compiler-free parts of kprobe-run are needed here.
struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "The device side of --adb.",
        shouldDisplay: false,
        subcommands: [Info.self, HeadersArchive.self]
    )

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print this system's kernel identity and kprobe-run version as one line.")
        func run() throws {
            print(DeviceInfo.current().line)
        }
    }

    struct HeadersArchive: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "headers",
            abstract: "Write the running kernel's kheaders archive to stdout, loading the kheaders module for it if needed (and unloading it again).")

        @Flag(name: .long, help: "Leave the kheaders module loaded if it had to be loaded.")
        var keepModule = false

        @Flag(name: .shortAndLong, help: "Say on stderr what was loaded and unloaded.")
        var verbose = false

        func run() throws {
            guard isatty(1) == 0 else {
                throw Failure(.usage, "refusing to write a binary archive to a terminal; redirect stdout (the host runs this through `adb exec-out`)")
            }
            let verbose = verbose
            let archive = try HeaderLocator.runningKernelArchive(keepModule: keepModule) { line in
                if verbose { Diagnostics.verbose(line) }
            }
            if verbose { Diagnostics.verbose("writing \(archive.bytes.count) bytes from \(archive.origin)") }
            do {
                try FileSystem.writeAll(archive.bytes, to: 1)
            } catch {
                throw Failure(.internal, "cannot write the archive to stdout: \(error)")
            }
        }
    }
}
