import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// A kernel architecture, named as the kernel's `arch/` directory names it.
public enum KernelArch: String, Sendable, CaseIterable {
    case x86, arm64, arm, riscv, powerpc, s390, mips, loongarch

    /// From `uname -m` (or a device's `ro.product.cpu.abi`-style machine name).
    public init?(machine: String) {
        switch machine {
        case "x86_64", "amd64", "x86", "i386", "i486", "i586", "i686", "x86_64_v2", "x86_64_v3":
            self = .x86
        case "aarch64", "aarch64_be", "arm64", "arm64-v8a", "armv8b":
            self = .arm64
        case "riscv64", "riscv32", "riscv":
            self = .riscv
        case "ppc", "ppc64", "ppc64le", "ppcle", "powerpc", "powerpc64", "powerpc64le":
            self = .powerpc
        case "s390", "s390x":
            self = .s390
        case "mips", "mipsel", "mips64", "mips64el":
            self = .mips
        case "loongarch64", "loongarch32", "loongarch":
            self = .loongarch
        default:
            if machine.hasPrefix("arm") || machine == "armeabi-v7a" {
                self = .arm
            } else {
                return nil
            }
        }
    }

    /// The macro libbpf's bpf_tracing.h keys its register accessors on.
    public var targetArchMacro: String { "__TARGET_ARCH_\(rawValue)" }

    /// The triple the C front end must parse kernel headers with: the arch headers hold inline
    /// assembly and type sizes only that target understands.
    public var frontendTriple: String {
        switch self {
        case .x86: "x86_64-linux-gnu"
        case .arm64: "aarch64-linux-gnu"
        case .arm: "arm-linux-gnueabi"
        case .riscv: "riscv64-linux-gnu"
        case .powerpc: "powerpc64le-linux-gnu"
        case .s390: "s390x-linux-gnu"
        case .mips: "mips64el-linux-gnuabi64"
        case .loongarch: "loongarch64-linux-gnu"
        }
    }
}

/// Where a `HeaderSet` came from.
public enum HeaderSourceKind: String, Sendable {
    /// /sys/kernel/kheaders.tar.xz (or /proc), possibly after loading the kheaders module.
    case kheaders
    /// /lib/modules/<release>/build, used in place.
    case build
    /// A kernel header tree given with --headers, used in place.
    case directory
    /// A kheaders .tar.xz given with --headers.
    case archive
    /// A kheaders.ko (optionally compressed) given with --headers, read without loading it.
    case moduleFile
    /// A vmlinux given with --headers: its built-in kheaders archive, or else its BTF.
    case vmlinuxFile
    /// vmlinux.h generated from kernel BTF.
    case btf
}

/// Everything a compile needs from the kernel's headers or types.
public struct HeaderSet: Sendable {
    public var kind: HeaderSourceKind
    /// The entry directory (unpacked or in-place tree) or, for BTF, the directory holding vmlinux.h.
    public var root: String
    public var arch: KernelArch
    /// Names the cache entry (or in-place tree state); part of compile-cache keys.
    public var identity: String
    /// For people: where the headers came from.
    public var origin: String
    /// "bpf" for BTF; the architecture's triple for kernel trees.
    public var frontendTriple: String
    /// Include paths, forced includes, defines and warning switches, with absolute paths.
    /// The compiler adds `-isystem <clang resource dir>/include` itself.
    public var compileArguments: [String]
    /// Set when the entry at `root` is still being written (a first run that asked for
    /// `HeaderOptions.unpackInBackground`): its files are in memory meanwhile.
    public var pending: PendingHeaders?

    public init(kind: HeaderSourceKind, root: String, arch: KernelArch, identity: String, origin: String,
                frontendTriple: String, compileArguments: [String]) {
        self.kind = kind
        self.root = root
        self.arch = arch
        self.identity = identity
        self.origin = origin
        self.frontendTriple = frontendTriple
        self.compileArguments = compileArguments
    }
}

public struct HeaderOptions: Sendable {
    /// --headers PATH or $KPROBE_RUN_HEADERS: a tree, a .tar.xz, a kheaders.ko(.xz/.gz/.zst) or a vmlinux.
    public var explicitSource: String?
    /// --keep-module: leave the kheaders module loaded if it had to be loaded.
    public var keepModule: Bool
    /// Whether vmlinux.h from BTF may stand in when no header tree is found.
    public var allowBTF: Bool
    /// The probe includes vmlinux.h, which no header tree has: the running kernel's BTF comes
    /// first (before a cached or loaded kheaders, or a build tree, that would fail it).
    public var preferBTF = false
    /// Show unpacking progress on stderr (only when stderr is a terminal).
    public var showProgress: Bool
    /// -v lines.
    public var log: @Sendable (String) -> Void
    public var cache: CacheRoot
    /// The target architecture when it is not the tree's or the machine's (a device's headers).
    public var arch: KernelArch?
    /// A compile's resolve: headers that must be unpacked are written on a thread of their own
    /// while the compiler reads them from memory (`HeaderSet.pending`); the process waits for the
    /// writer before it exits.
    public var unpackInBackground = false

    public init(explicitSource: String? = nil, keepModule: Bool = false, allowBTF: Bool = true,
                showProgress: Bool = false, log: @escaping @Sendable (String) -> Void = { _ in },
                cache: CacheRoot, arch: KernelArch? = nil) {
        self.explicitSource = explicitSource
        self.keepModule = keepModule
        self.allowBTF = allowBTF
        self.showProgress = showProgress
        self.log = log
        self.cache = cache
        self.arch = arch
    }
}

/// No usable kernel headers or types (exit 4), or not allowed to get them (exit 7).
public struct HeaderError: KprobeRunError {
    public var kind: FailureKind
    public var message: String

    public init(_ message: String, kind: FailureKind = .noKernelHeaders) {
        self.kind = kind
        self.message = message
    }

    init(_ failure: Failure) {
        self.init(failure.message, kind: failure.kind == .notPermitted ? .notPermitted : .noKernelHeaders)
    }

    /// An input that could not be read whole: too large (past `InputLimit.archive`), not
    /// permitted, or another error.
    static func unreadable(_ path: String, _ error: Errno) -> HeaderError {
        if error.rawValue == EFBIG {
            return HeaderError("\(path) is \(InputLimit.describe(InputLimit.archive)) or endless: no kheaders archive or kernel module is that large; point --headers at the kernel's kheaders.tar.xz, kheaders.ko, a vmlinux or a header directory")
        }
        return HeaderError("cannot read \(path): \(error)", kind: error.isPermission ? .notPermitted : .noKernelHeaders)
    }
}

/// Caps on what an archive may unpack to, so a hostile or corrupt archive cannot fill the disk.
public struct ExtractionLimits: Sendable, Equatable {
    public var maxTotalBytes: Int64
    public var maxEntries: Int

    public init(maxTotalBytes: Int64, maxEntries: Int) {
        self.maxTotalBytes = maxTotalBytes
        self.maxEntries = maxEntries
    }

    /// 1 GiB and 200,000 members: a kheaders archive unpacks to about 30-50 MiB and 7,000 files.
    public static let standard = ExtractionLimits(maxTotalBytes: 1 << 30, maxEntries: 200_000)
}

/// Finds the running kernel's headers (or a given tree or archive), keeps them in the cache and
/// says how to compile against them.
public struct HeaderLocator: Sendable {
    public let options: HeaderOptions
    let limits: ExtractionLimits

    public init(options: HeaderOptions) {
        self.init(options: options, limits: .standard)
    }

    public init(options: HeaderOptions, limits: ExtractionLimits) {
        self.options = options
        self.limits = limits
    }

    /// Finds headers in the documented order, unpacking into the cache when needed.
    public func resolve() throws(HeaderError) -> HeaderSet {
        var resolver = Resolver(options: options, limits: limits)
        return try resolver.resolve()
    }

    /// What `headers status` shows: the sources present, the one a run would use, the cache.
    public func status() -> HeaderStatus {
        HeaderStatus.gather(options: options)
    }

    /// Removes cache entries (header trees and vmlinux.h) that are not of the running kernel,
    /// and leftovers of interrupted extractions; returns what was removed.
    public func prune() throws(HeaderError) -> [String] {
        let cache = HeaderCache(root: options.cache, log: options.log)
        return try cache.prune(keepingRelease: RunningKernel.release,
                               keepingKey: KernelKey.running.entryName)
    }

    /// Unpacks the kheaders archive in `file` (.tar.xz, kheaders.ko[.xz/.gz/.zst] or vmlinux)
    /// into `directory`, which must not exist or be empty, with the cache's secure extraction.
    public static func extractArchive(from file: String, to directory: String) throws(HeaderError) {
        try extractArchive(from: file, to: directory, limits: .standard)
    }

    public static func extractArchive(from file: String, to directory: String,
                                      limits: ExtractionLimits) throws(HeaderError) {
        let input = try ArchiveInput.load(file)
        guard case .archive(let archive, _) = input else {
            throw HeaderError("\(file) holds no kheaders archive (only BTF); generate vmlinux.h from it instead with `kprobe-run headers fetch --headers \(file)`")
        }
        try ExtractDirectory.unpack(archive, named: file, into: directory, limits: limits)
    }
}
