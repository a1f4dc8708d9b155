import KprobeSupport

/// The running kernel's kheaders archive itself, for a host that compiles for this machine
/// (`kprobe-run device headers` over adb): nothing is unpacked here.
public struct RunningKernelArchive: Sendable {
    public var bytes: [UInt8]
    /// For people: where it came from and whether the module was loaded for it.
    public var origin: String
}

extension HeaderLocator {
    /// /sys/kernel/kheaders.tar.xz, loading the kheaders module (modprobe, else the module file
    /// from /lib/modules or Android's module directories) when needed and unloading it again
    /// unless `keepModule`; failing that, the archive read out of the module file.
    public static func runningKernelArchive(keepModule: Bool, log: @escaping @Sendable (String) -> Void) throws(HeaderError) -> RunningKernelArchive {
        let release = RunningKernel.release
        if let path = KheadersModule.archivePath {
            do throws(Errno) {
                return RunningKernelArchive(bytes: try FileSystem.read(path, limit: InputLimit.archive), origin: path)
            } catch {
                throw HeaderError.unreadable(path, error)
            }
        }
        var notes: [String] = []
        guard let fetched = try KheadersModule.fetch(release: release, keep: keepModule, log: log, notes: &notes) else {
            throw HeaderError("no kheaders archive for \(release): /sys/kernel/kheaders.tar.xz is absent and the kheaders module could not be loaded or read (\(notes.joined(separator: "; "))); use a kernel with CONFIG_IKHEADERS")
        }
        return RunningKernelArchive(bytes: fetched.archive.bytes, origin: fetched.origin)
    }
}
