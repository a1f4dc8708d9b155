import ArgumentParser
import KernelHeaders
import KprobeSupport

/// `kprobe-run headers …`: look at and manage the kernel headers cache.
struct Headers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find, unpack and manage kernel headers.",
        discussion: """
            BCC and bpftrace can use the same unpacked headers:
              BCC_KERNEL_SOURCE=$(kprobe-run headers path) opensnoop-bpfcc
              BPFTRACE_KERNEL_SOURCE=$(kprobe-run headers path) bpftrace -e '…'
            """,
        subcommands: [Status.self, Path.self, Fetch.self, Prune.self, Extract.self]
    )

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the header sources found, which one is used and why, and the cache entries.")
        @OptionGroup var options: HeaderCommandOptions
        func run() throws {
            print(HeaderLocator(options: options.headerOptions()).status())
        }
    }

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the directory of the headers used for the running kernel (unpacking them if needed).")
        @OptionGroup var options: HeaderCommandOptions
        func run() throws {
            print(try HeaderLocator(options: options.headerOptions()).resolve().root)
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Find and unpack the headers now, so the next run starts at once.")
        @OptionGroup var options: HeaderCommandOptions
        func run() throws {
            let set = try HeaderLocator(options: options.headerOptions()).resolve()
            Diagnostics.verbose("headers ready: \(set.origin) at \(set.root)")
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove cached headers of kernels other than the running one.")
        @OptionGroup var options: HeaderCommandOptions
        func run() throws {
            for removed in try HeaderLocator(options: options.headerOptions()).prune() {
                print("removed \(removed)")
            }
        }
    }

    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unpack the header archive in FILE (a .tar.xz, a kheaders.ko, or a vmlinux) into DIR, without loading anything.")
        @Argument(help: ArgumentHelp("A kheaders .tar.xz, kheaders.ko(.xz/.gz/.zst) or vmlinux.", valueName: "FILE"))
        var file: String
        @Option(name: .shortAndLong, help: ArgumentHelp("The directory to create.", valueName: "DIR"))
        var output: String
        func run() throws {
            guard FileSystem.exists(file) else { throw Failure(.usage, "\(file): no such file") }
            try HeaderLocator.extractArchive(from: file, to: output)
        }
    }
}

/// The compile options that matter to header commands.
struct HeaderCommandOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Use these headers instead of looking for them (see `kprobe-run --help`).", valueName: "PATH"))
    var headers: String?

    @Flag(name: .long, help: "Leave the kheaders module loaded if kprobe-run had to load it.")
    var keepModule = false

    @Flag(name: .shortAndLong, help: "Say on stderr what is looked at and why.")
    var verbose = false

    func validate() throws {
        try HeaderOptions.validate(headers: headers)
    }

    func headerOptions() -> HeaderOptions {
        HeaderOptions.commandLine(headers: headers, keepModule: keepModule, verbose: verbose)
    }
}
