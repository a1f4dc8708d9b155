#if canImport(Glibc)
import Glibc
#endif

import ArgumentParser
import KernelHeaders
import KprobeSupport
import ProbeCompiler

/// Options for turning a probe source into a BPF object, shared by `run` and `compile`.
struct CompileOptions: ParsableArguments {
    @Option(name: [.customShort("D")], help: ArgumentHelp("Define a macro for the probe (NAME or NAME=VALUE; -DNAME=VALUE as with cc).", valueName: "NAME[=VALUE]"))
    var defines: [String] = []

    @Option(name: [.customShort("I")], help: ArgumentHelp("Add a directory to the probe's include path (-IDIR as with cc).", valueName: "DIR"))
    var includeDirectories: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Kernel headers to compile against: a directory, a kheaders .tar.xz, a kheaders.ko, or a vmlinux built with CONFIG_IKHEADERS (default: $KPROBE_RUN_HEADERS, else found automatically).",
        valueName: "PATH"))
    var headers: String?

    @Flag(name: .long, help: "Leave the kheaders module loaded if kprobe-run had to load it.")
    var keepModule = false

    @Option(name: .long, help: "The probe's C dialect: bcc (BCC's tables, methods and naming conventions), libbpf (SEC() names, BTF maps), or auto to tell them apart.")
    var dialect: DialectChoice = .auto

    @Option(name: .long, help: ArgumentHelp(
        "The BPF instruction set to generate: v1, v2 or v3 (default: v2 for kernels from Linux 4.14, else v1; when the verifier refuses v2 code on Linux 5.1 or later, v3 is compiled and tried too).",
        valueName: "VERSION"))
    var mcpu: BPFCPU?

    @Flag(name: .shortAndLong, help: "Say on stderr where headers come from, how long the compile took and where probes attach.")
    var verbose = false

    /// `-DNAME=VALUE` and `-IDIR` joined as cc takes them (before `--`) become `-D NAME=VALUE` and
    /// `-I DIR`: the parser's own joined form reads `-DNAME=VALUE` as an option named DNAME.
    static func normalize(_ arguments: [String]) -> [String] {
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        return arguments[..<end].flatMap { argument -> [String] in
            guard argument.count > 2, argument.hasPrefix("-D") || argument.hasPrefix("-I") else { return [argument] }
            return [String(argument.prefix(2)), String(argument.dropFirst(2))]
        } + arguments[end...]
    }

    func validate() throws {
        for define in defines where define.isEmpty || define.hasPrefix("=") {
            throw ValidationError("-D needs NAME or NAME=VALUE, got '\(define)'")
        }
        for directory in includeDirectories where !FileSystem.isDirectory(directory) {
            throw ValidationError("-I \(directory): no such directory")
        }
        try HeaderOptions.validate(headers: headers)
    }

    /// The user's -I as compiler arguments, made absolute so the worker (which may run elsewhere)
    /// resolves them the same way. They go before the built-in directories: a probe's own
    /// vmlinux.h or newer libbpf headers win over the ones kprobe-run serves.
    var includeArguments: [String] {
        includeDirectories.map { "-I" + Paths.absolute($0) }
    }

    /// The user's -D, after the built-in flags so that the user's value is the one that holds.
    var defineArguments: [String] {
        defines.map { "-D" + $0 }
    }

    func headerOptions() -> HeaderOptions {
        HeaderOptions.commandLine(headers: headers, keepModule: keepModule, verbose: verbose)
    }
}

extension HeaderOptions {
    /// A --headers path that does not exist is a mistake on the command line (exit 2), not a
    /// kernel without headers (4).
    static func validate(headers: String?) throws {
        if let headers, !FileSystem.exists(headers) {
            throw ValidationError("--headers \(headers): no such file or directory")
        }
    }

    /// Header options as every command derives them: the flag, else $KPROBE_RUN_HEADERS; progress
    /// only on a terminal; -v lines to stderr.
    static func commandLine(headers: String?, keepModule: Bool, verbose: Bool) -> HeaderOptions {
        HeaderOptions(
            explicitSource: headers ?? Environment.get("KPROBE_RUN_HEADERS").flatMap { $0.isEmpty ? nil : $0 },
            keepModule: keepModule,
            allowBTF: true,
            showProgress: Diagnostics.stderrIsTerminal,
            log: { line in if verbose { Diagnostics.verbose(line) } },
            cache: CacheRoot.resolve()
        )
    }
}

enum DialectChoice: String, CaseIterable, ExpressibleByArgument {
    case auto, bcc, libbpf

    func resolved(for source: String) -> Dialect {
        switch self {
        case .auto: Dialect.detect(source: source)
        case .bcc: .bcc
        case .libbpf: .libbpf
        }
    }
}

enum Paths {
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let directory = getcwd(nil, 0) else { return path }
        defer { free(directory) }
        let cwd = String(cString: directory)
        return cwd == "/" ? "/" + path : cwd + "/" + path
    }
}

extension BPFCPU: ExpressibleByArgument {}
