import Glibc
import KprobeSupport
#if canImport(Testing)
import Testing
#endif

/// Where tests find the package and the shared inputs beside it (test kernels, corpora), found
/// from this file's place in the package, never from an absolute machine path.
public enum TestInputs {
    /// The package root: this file is Tests/TestSupport/TestInputs.swift.
    public static let packageRoot: String = {
        var path = #filePath
        for _ in 0..<3 { path = FileSystem.directory(of: path) }
        return path
    }()

    /// `../shared/RELATIVE` from the package root (read-only inputs: the test kernel, its
    /// headers, the BCC corpus).
    public static func shared(_ relative: String) -> String {
        packageRoot + "/../shared/" + relative
    }

    /// The 6.1 test kernel's kheaders archive and module (Linux 6.1.192, x86-64).
    public static let testKernelArchive = shared("testkernel/kheaders.tar.xz")
    public static let testKernelModule = shared("testkernel/modules/lib/modules/6.1.192-kheaders-test/kernel/kernel/kheaders.ko")
    public static let testKernelRelease = "6.1.192-kheaders-test"
    /// An arm64 kernel's kheaders archive.
    public static let arm64Archive = shared("arm64-kheaders/kheaders.tar.xz")
    /// BCC's tools, unchanged, as BCC ships them.
    public static let bccCorpus = shared("bcc-corpus")

    /// Whether the effective user is root (tests that load programs need it).
    public static var isRoot: Bool { geteuid() == 0 }
}

#if canImport(Testing)
// A plain `swift build` (release, for the bench) builds this target too, without the Testing module.

/// Test tiers, so one can be run alone (README, "Tests"): `unit` tests need neither root nor a
/// kernel feature; `hostKernel` tests load programs into the running kernel; `emulatedKernel`
/// tests boot the 6.1 test kernel under QEMU.
extension Tag {
    @Tag public static var unit: Self
    @Tag public static var hostKernel: Self
    @Tag public static var emulatedKernel: Self
}
#endif
