import KprobeSupport

/// What a BCC program gets implicitly, decided where the compile is prepared: the `args` structs of
/// the tracepoints it names, read from a kernel's tracefs, and the kernel's syscall symbol prefix
/// for `kprobe__sys_*` names.
public enum BCCPreparation {
    /// The headers a BCC compile is against, as far as the preparation cares.
    public struct Target: Sendable {
        /// Where the headers came from, for the message when they are only BTF.
        public var origin: String
        /// Only BTF was found: BCC programs need real kernel headers.
        public var isBTFOnly: Bool
        /// The headers are the running kernel's architecture, so its kallsyms gives the prefix.
        public var isRunningKernel: Bool

        public init(origin: String, isBTFOnly: Bool, isRunningKernel: Bool) {
            self.origin = origin
            self.isBTFOnly = isBTFOnly
            self.isRunningKernel = isRunningKernel
        }
    }

    /// Adds the tracepoint header and the syscall prefix to `request`. `tracefs` gives the mounted
    /// tracefs directory and is called only when the program names a tracepoint (mounting is the
    /// runtime's business, so the caller supplies it).
    public static func prepare(_ request: inout CompileRequest, for target: Target, tracefs: () throws -> String) throws {
        guard !target.isBTFOnly else {
            throw Failure(.noKernelHeaders, """
                BCC-dialect probes need kernel headers, and only BTF was found (\(target.origin)); \
                load kheaders (CONFIG_IKHEADERS), install linux-headers-\(RunningKernel.release), or pass --headers
                """)
        }
        if !TracepointFormat.referencedTracepoints(in: request.source).isEmpty,
           let header = try TracepointFormat.header(for: request.source, tracefs: tracefs()) {
            request.virtualFiles.append(header)
        }
        request.syscallPrefix = target.isRunningKernel ? SyscallPrefix.running() : SyscallPrefix.typical(forTriple: request.frontendTriple)
    }
}
