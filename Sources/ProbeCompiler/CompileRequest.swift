import KprobeSupport

/// A file the compiler sees at an absolute path, in front of the real filesystem (generated
/// headers such as vmlinux.h, libbpf's BPF-side headers).
public struct VirtualFile: Sendable, Equatable {
    public var path: String
    public var contents: String

    public init(path: String, contents: String) {
        self.path = path
        self.contents = contents
    }
}

/// Everything the worker needs to compile one probe; nothing is read from the parent's state.
public struct CompileRequest: Sendable, Equatable {
    /// The name diagnostics use, as the user wrote it (e.g. "bpf-examples/hello.c").
    public var sourcePath: String
    public var source: String
    /// "bpf" (vmlinux.h, CO-RE) or an arch triple such as "x86_64-linux-gnu" (real kernel headers).
    public var frontendTriple: String
    /// Driver-style flags: header flags (-nostdinc, -I, -include, -D, -W…), then the user's -D/-I.
    public var arguments: [String]
    public var virtualFiles: [VirtualFile]
    /// BCC sources are rewritten into libbpf C by `kprobe-run-bcc` before they are compiled.
    public var dialect: Dialect
    /// The kernel's prefix of system call functions (e.g. "__x64_sys_"), for BCC's
    /// `kprobe__sys_NAME` and `syscall__NAME`; "" for kernels without syscall wrappers.
    public var syscallPrefix: String
    /// The BPF instruction set to generate; nil for LLVM's default (v1).
    public var cpu: BPFCPU?
    /// Where the worker keeps precompiled headers for this header entry; nil compiles plainly.
    /// `WorkerCompiler.compile(_:cache:)` fills it in.
    public var precompiledHeaders: PrecompiledHeaderSettings?
    /// The kernel headers, in memory while their cache entry is being written (a first run).
    public var headerImage: HeaderImage?

    public init(sourcePath: String, source: String, frontendTriple: String, arguments: [String], virtualFiles: [VirtualFile] = [],
                dialect: Dialect = .libbpf, syscallPrefix: String = "", cpu: BPFCPU? = nil, precompiledHeaders: PrecompiledHeaderSettings? = nil) {
        self.sourcePath = sourcePath
        self.source = source
        self.frontendTriple = frontendTriple
        self.arguments = arguments
        self.virtualFiles = virtualFiles
        self.dialect = dialect
        self.syscallPrefix = syscallPrefix
        self.cpu = cpu
        self.precompiledHeaders = precompiledHeaders
    }
}

/// A header tree the worker reads from memory: the decompressed kheaders archive in a memfd
/// (the worker's descriptor `HeaderImage.workerDescriptor`), with each file's place in it, served
/// at the paths the cache entry being written will have. The compile is the same as from the
/// files: same paths, same bytes.
public struct HeaderImage: Sendable, Equatable {
    public struct File: Sendable, Equatable {
        /// Relative to `root`.
        public var path: String
        public var offset: Int
        public var size: Int

        public init(path: String, offset: Int, size: Int) {
            self.path = path
            self.offset = offset
            self.size = size
        }
    }

    /// The descriptor the worker finds the memfd at.
    public static let workerDescriptor: Int32 = 3

    /// The cache entry's path.
    public var root: String
    /// The parent's descriptor of the memfd (not sent: the worker has it as `workerDescriptor`).
    public var descriptor: Int32
    public var size: Int
    public var files: [File]
    /// Held by the entry's writer until the entry is complete: the precompiled-header builder,
    /// which must read the files themselves, waits for it.
    public var lockPath: String

    public init(root: String, descriptor: Int32, size: Int, files: [File], lockPath: String) {
        self.root = root
        self.descriptor = descriptor
        self.size = size
        self.files = files
        self.lockPath = lockPath
    }
}

/// `<directory>/<headerIdentity>-<digest>.pch` names a precompiled header (see PrecompiledHeaders).
public struct PrecompiledHeaderSettings: Sendable, Equatable {
    /// An existing private directory (`<cache>/pch`).
    public var directory: String
    /// `HeaderSet.identity`: the header entry the precompiled headers are made of.
    public var headerIdentity: String

    public init(directory: String, headerIdentity: String) {
        self.directory = directory
        self.headerIdentity = headerIdentity
    }
}

/// A BPF ELF object (with .BTF and .BTF.ext) and the warnings clang printed while making it.
public struct CompiledObject: Sendable, Equatable {
    public var elf: [UInt8]
    public var diagnostics: String
    /// The files the compile read, as clang named them (relative ones against the working directory).
    public var dependencies: [String]
    /// For -v: whether the object came from the compile cache or a precompiled header, and why not.
    public var notes: [String]
    /// True when the object came from the compile cache and no compiler ran.
    public var fromCache: Bool

    public init(elf: [UInt8], diagnostics: String, dependencies: [String] = [], notes: [String] = [], fromCache: Bool = false) {
        self.elf = elf
        self.diagnostics = diagnostics
        self.dependencies = dependencies
        self.notes = notes
        self.fromCache = fromCache
    }
}

/// The probe did not compile, or the compiler worker could not do its job.
public struct CompileError: KprobeRunError, Equatable {
    public var kind: FailureKind { .compile }
    /// clang's diagnostics for a probe that did not compile; otherwise what happened to the worker.
    public var message: String

    public init(_ message: String) { self.message = message }
}
