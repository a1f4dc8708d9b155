import ArgumentParser
import KernelHeaders
import KprobeSupport
import ProbeCompiler
import ProbeRuntime

#if canImport(Glibc)
import Glibc
#endif

/// Where the probe comes from: a file (`-` for standard input) or the text of `-e`.
struct ProbeSource: ParsableArguments {
    @Argument(help: ArgumentHelp("The probe: C source, or a BPF object from `kprobe-run compile`; - reads it from standard input.", valueName: "PROBE"))
    var probe: String?

    @Option(name: [.customShort("e"), .customLong("program")], help: ArgumentHelp(
        "The probe's C source itself, for one-liners (diagnostics name it <command line>).", valueName: "PROGRAM"))
    var program: String?

    func validate() throws {
        switch (probe, program) {
        case (nil, nil): throw ValidationError("give a probe: a .c or .o file, - for standard input, or -e 'PROGRAM'")
        case (.some(let probe), .some): throw ValidationError("give one probe: \(probe) or -e, not both")
        default: break
        }
    }

    /// What the user pointed at, for messages that suggest a next command.
    var shownName: String { probe ?? ProbeInput.commandLineName }

    func load() throws(Failure) -> ProbeInput {
        if let program { return .source(path: ProbeInput.commandLineName, text: program) }
        return try ProbeInput.load(probe ?? "-")
    }
}

/// A probe given on the command line: C source to compile, or an object compiled earlier.
enum ProbeInput {
    case source(path: String, text: String)
    case object(path: String, bytes: [UInt8])

    /// The names diagnostics give a probe that has no file (as compilers name them).
    static let commandLineName = "<command line>"
    static let standardInputName = "<stdin>"

    static func load(_ path: String) throws(Failure) -> ProbeInput {
        let bytes: [UInt8]
        let name = path == "-" ? standardInputName : path
        if path != "-" {
            if FileSystem.isDirectory(path) {
                throw Failure(.usage, "\(path) is a directory; give a probe .c file or a compiled .o")
            }
            guard FileSystem.isRegularFile(path) else {
                throw Failure(.usage, "\(path): no such file (give a probe .c file or a compiled .o)")
            }
        }
        do {
            bytes = path == "-" ? try FileSystem.readAll(0, limit: InputLimit.probe)
                                : try FileSystem.read(path, limit: InputLimit.probe)
        } catch {
            let why = error.rawValue == EFBIG ? "it is \(InputLimit.describe(InputLimit.probe)), far more than any probe" : "\(error)"
            let what = path == "-" ? "the probe from standard input" : path
            throw Failure(error.isPermission ? .notPermitted : .usage, "cannot read \(what): \(why)")
        }
        if bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) {
            if let problem = ELFImage.bpfObjectProblem(bytes) {
                throw Failure(.usage, "\(name) is not a usable BPF object: \(problem)")
            }
            return .object(path: name, bytes: bytes)
        }
        if name.hasSuffix(".o") {
            throw Failure(.usage, "\(name) is named like a compiled object but is not an ELF file; give a probe .c file or an object written by `kprobe-run compile`")
        }
        return .source(path: name, text: String(decoding: bytes, as: UTF8.self))
    }

    /// The object's name for libbpf and messages: the file name without directory or extension.
    var name: String {
        let path: String
        switch self {
        case .source(let p, _), .object(let p, _): path = p
        }
        if path == Self.commandLineName || path == Self.standardInputName { return "probe" }
        var base = path.split(separator: "/").last.map(String.init) ?? path
        if let dot = base.lastIndex(of: ".") { base = String(base[..<dot]) }
        return base.isEmpty ? "probe" : base
    }
}

/// Headers → compile: the first half of every run that starts from C.
struct ProbeBuild {
    var options: CompileOptions
    /// The target kernel's architecture when it is not necessarily this machine's (--adb: the
    /// device's): headers must then be for it, and are parsed with its triple.
    var arch: KernelArch? = nil

    func object(for input: ProbeInput) throws -> [UInt8] {
        switch input {
        case .object(let path, let bytes):
            if options.verbose { Diagnostics.verbose("\(path) is a compiled object: no compile") }
            return bytes
        case .source(let path, let text):
            return try compile(path: path, source: text).elf
        }
    }

    /// The probe's object and what `load` (which loads it into the kernel) made of it. When the
    /// verifier refuses the code of the default instruction set and the kernel runs a newer one,
    /// the probe is compiled for that and loaded again (`BPFCPU.preferred` says why); when both
    /// are refused, the first refusal is the one reported. --mcpu and compiled objects get one try.
    func loaded<Loaded>(_ input: ProbeInput, _ load: ([UInt8]) throws -> Loaded) throws -> (object: [UInt8], loaded: Loaded) {
        guard case .source(let path, let text) = input else {
            let object = try object(for: input)
            return (object, try load(object))
        }
        let first = try compile(path: path, source: text)
        do {
            return (first.elf, try load(first.elf))
        } catch let refusal as KprobeRunError where refusal.kind == .rejected {
            guard let retry = first.fallback else { throw refusal }
            if options.verbose { Diagnostics.verbose("the kernel refused the BPF \(first.cpu.rawValue) code; compiling as \(retry.rawValue) and loading again") }
            let second = try compile(path: path, source: text, cpu: retry)
            do {
                return (second.elf, try load(second.elf))
            } catch let again as KprobeRunError where again.kind == .rejected {
                throw Failure(.rejected, refusal.message + "\n(compiled as BPF \(retry.rawValue) instead, the probe was refused too; --mcpu chooses the instruction set)")
            }
        }
    }

    /// A compiled probe, the instruction set it was generated for, and the one to try when the
    /// kernel refuses it (nil with --mcpu, or when the kernel runs nothing newer).
    struct Compiled {
        var elf: [UInt8]
        var cpu: BPFCPU
        var fallback: BPFCPU?
    }

    func compile(path: String, source: String, cpu requested: BPFCPU? = nil) throws -> Compiled {
        var headerOptions = options.headerOptions()
        headerOptions.arch = arch
        headerOptions.unpackInBackground = true
        let dialect = options.dialect.resolved(for: source)
        // The running kernel's BTF is no device's types.
        headerOptions.preferBTF = arch == nil && dialect == .libbpf && Self.includesVmlinuxHeader(source)
        let headers = try HeaderLocator(options: headerOptions).resolve()
        if options.verbose {
            Diagnostics.verbose("headers: \(headers.origin) [\(headers.kind.rawValue), \(headers.arch.rawValue)] at \(headers.root)")
        }
        let libbpf = try LibbpfHeaders.load()
        let newest = Self.newestCPU(for: headers)
        let cpu = requested ?? options.mcpu ?? BPFCPU.preferred(upTo: newest)
        var request = CompileRequest(
            sourcePath: path,
            source: source,
            frontendTriple: headers.frontendTriple,
            arguments: options.includeArguments + headers.compileArguments + [libbpf.includeArgument] + options.defineArguments,
            virtualFiles: libbpf.virtualFiles,
            dialect: dialect,
            cpu: cpu
        )
        if options.verbose { Diagnostics.verbose("generating BPF \(cpu.rawValue) code\(options.mcpu == nil && requested == nil ? " (for the target kernel; --mcpu to choose)" : "")") }
        if dialect == .bcc {
            let target = BCCPreparation.Target(
                origin: headers.origin, isBTFOnly: headers.kind == .btf,
                isRunningKernel: KernelArch(machine: RunningKernel.machine) == headers.arch)
            let verbose = options.verbose
            try BCCPreparation.prepare(&request, for: target) {
                try TracefsMount.path { line in if verbose { Diagnostics.verbose(line) } }
            }
        }
        if let pending = headers.pending {
            if dialect == .bcc {
                // The BCC rewriter parses with libclang, which reads the files themselves.
                if let error = pending.wait() { throw error }
            } else {
                request.headerImage = HeaderImage(
                    root: pending.root, descriptor: pending.imageFD, size: pending.imageSize,
                    files: pending.files.map { HeaderImage.File(path: $0.path, offset: $0.offset, size: $0.size) },
                    lockPath: pending.lockPath)
            }
        }
        let started = MonotonicClock.now
        let cache = CompileCache(root: headerOptions.cache, headerIdentity: headers.identity)
        let compiled: CompiledObject
        do {
            defer { headers.pending?.releaseImage() }
            compiled = try WorkerCompiler().compile(request, cache: cache)
        } catch {
            throw Self.explained(error, headers: headers)
        }
        // Warnings are kept with cached objects and shown again on a hit.
        if !compiled.diagnostics.isEmpty { Diagnostics.write(compiled.diagnostics) }
        if options.verbose {
            for note in compiled.notes { Diagnostics.verbose(note) }
            let how = compiled.fromCache ? "took \(path) from the compile cache" : "compiled \(path) as \(dialect.rawValue) C"
            Diagnostics.verbose("\(how) in \(MonotonicClock.milliseconds(since: started)) ms (\(compiled.elf.count) bytes of BPF object)")
        }
        let fallback = options.mcpu == nil && requested == nil ? BPFCPU.fallback(after: cpu, upTo: newest) : nil
        return Compiled(elf: compiled.elf, cpu: cpu, fallback: fallback)
    }

    /// Whether the probe includes vmlinux.h itself (libbpf-tools' first line).
    static func includesVmlinuxHeader(_ source: String) -> Bool {
        source.split(separator: "\n").contains { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "#" }).map(String.init)
            return line.trimmingPrefix(while: { $0 == " " || $0 == "\t" }).hasPrefix("#")
                && words.count >= 2 && words[0] == "include" && (words[1] == "<vmlinux.h>" || words[1] == "\"vmlinux.h\"")
        }
    }

    /// A missing vmlinux.h with headers that have no BTF to generate it from gets the reason.
    static func explained(_ error: CompileError, headers: HeaderSet) -> CompileError {
        guard headers.kind != .btf, error.message.contains("'vmlinux.h' file not found") else { return error }
        return CompileError(error.message + "\nvmlinux.h is generated from a kernel's BTF, and \(headers.origin) has none: compile libbpf-style probes for a kernel with BTF (/sys/kernel/btf/vmlinux), or give that kernel's vmlinux.h with -I DIR.")
    }

    /// The newest instruction set the headers' kernel runs. A kernel with BTF is 5.2 or later
    /// (v3); a header tree says its version; one that does not gets v1, which every kernel runs.
    static func newestCPU(for headers: HeaderSet) -> BPFCPU {
        if headers.frontendTriple == "bpf" { return .v3 }
        return BPFCPU.newest(forHeaderTree: headers.root, read: headers.pending?.text(of:)) ?? .v1
    }
}
