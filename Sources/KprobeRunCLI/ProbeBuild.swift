import KernelHeaders
import KprobeSupport
import ProbeCompiler
import ProbeRuntime

#if canImport(Glibc)
import Glibc
#endif

/// A probe given on the command line: C source to compile, or an object compiled earlier.
enum ProbeInput {
    case source(path: String, text: String)
    case object(path: String, bytes: [UInt8])

    static func load(_ path: String) throws(Failure) -> ProbeInput {
        guard FileSystem.isRegularFile(path) else {
            throw Failure(.usage, "\(path): no such file (give a probe .c file or a compiled .o)")
        }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.read(path)
        } catch {
            throw Failure(error.isPermission ? .notPermitted : .usage, "cannot read \(path): \(error)")
        }
        if bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) {
            return .object(path: path, bytes: bytes)
        }
        return .source(path: path, text: String(decoding: bytes, as: UTF8.self))
    }

    /// The object's name for libbpf and messages: the file name without directory or extension.
    var name: String {
        let path: String
        switch self {
        case .source(let p, _), .object(let p, _): path = p
        }
        var base = path.split(separator: "/").last.map(String.init) ?? path
        if let dot = base.lastIndex(of: ".") { base = String(base[..<dot]) }
        return base.isEmpty ? "probe" : base
    }
}

/// Headers → compile: the first half of every run that starts from C.
struct ProbeBuild {
    var options: CompileOptions

    func object(for input: ProbeInput) throws -> [UInt8] {
        switch input {
        case .object(let path, let bytes):
            if options.verbose { Diagnostics.verbose("\(path) is a compiled object: no compile") }
            return bytes
        case .source(let path, let text):
            return try compile(path: path, source: text)
        }
    }

    func compile(path: String, source: String) throws -> [UInt8] {
        let headerOptions = options.headerOptions()
        let headers = try HeaderLocator(options: headerOptions).resolve()
        if options.verbose {
            Diagnostics.verbose("headers: \(headers.origin) [\(headers.kind.rawValue), \(headers.arch.rawValue)] at \(headers.root)")
        }
        let libbpf = try LibbpfHeaders.load()
        let dialect = options.dialect.resolved(for: source)
        var request = CompileRequest(
            sourcePath: path,
            source: source,
            frontendTriple: headers.frontendTriple,
            arguments: options.includeArguments + headers.compileArguments + [libbpf.includeArgument] + options.defineArguments,
            virtualFiles: libbpf.virtualFiles,
            dialect: dialect,
            cpu: options.mcpu ?? Self.newestCPU(for: headers)
        )
        if options.verbose { Diagnostics.verbose("generating BPF \(request.cpu?.rawValue ?? "v1") code\(options.mcpu == nil ? " (the newest the target kernel runs; --mcpu to choose)" : "")") }
        if dialect == .bcc { try prepareBCC(&request, headers: headers) }
        let started = MonotonicClock.now
        let cache = CompileCache(root: headerOptions.cache, headerIdentity: headers.identity)
        let compiled = try WorkerCompiler().compile(request, cache: cache)
        // Warnings are kept with cached objects and shown again on a hit.
        if !compiled.diagnostics.isEmpty { Diagnostics.write(compiled.diagnostics) }
        if options.verbose {
            for note in compiled.notes { Diagnostics.verbose(note) }
            let how = compiled.fromCache ? "took \(path) from the compile cache" : "compiled \(path) as \(dialect.rawValue) C"
            Diagnostics.verbose("\(how) in \(MonotonicClock.milliseconds(since: started)) ms (\(compiled.elf.count) bytes of BPF object)")
        }
        return compiled.elf
    }

    /// The newest instruction set the headers' kernel runs. A kernel with BTF is 5.2 or later
    /// (v3); a header tree says its version; one that does not gets v1, which every kernel runs.
    static func newestCPU(for headers: HeaderSet) -> BPFCPU {
        if headers.frontendTriple == "bpf" { return .v3 }
        return BPFCPU.newest(forHeaderTree: headers.root) ?? .v1
    }

    /// What a BCC program gets implicitly: `args` structs for its tracepoints, read from this
    /// kernel's tracefs, and the kernel's syscall symbol prefix for `kprobe__sys_*`.
    private func prepareBCC(_ request: inout CompileRequest, headers: HeaderSet) throws {
        guard headers.kind != .btf else {
            throw Failure(.noKernelHeaders, """
                BCC-dialect probes need kernel headers, and only BTF was found (\(headers.origin)); \
                load kheaders (CONFIG_IKHEADERS), install linux-headers-\(RunningKernel.release), or pass --headers
                """)
        }
        if !TracepointFormat.referencedTracepoints(in: request.source).isEmpty {
            let verbose = options.verbose
            let tracefs = try TracefsMount.path { line in if verbose { Diagnostics.verbose(line) } }
            if let header = try TracepointFormat.header(for: request.source, tracefs: tracefs) {
                request.virtualFiles.append(header)
            }
        }
        let native = KernelArch(machine: RunningKernel.machine) == headers.arch
        request.syscallPrefix = native ? SyscallPrefix.running() : SyscallPrefix.typical(forTriple: headers.frontendTriple)
    }
}
