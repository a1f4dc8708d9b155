import KprobeSupport

/// The BPF instruction set the compiler generates (clang's -mcpu). v1 is LLVM's default and
/// makes longer code with fewer kinds of jumps, which the verifier follows less well. A kernel
/// rejects instructions newer than it knows, so the choice follows the kernel the probe is for.
public enum BPFCPU: String, Sendable, CaseIterable, Comparable {
    /// Every kernel with BPF.
    case v1
    /// Adds the unsigned and signed "less than" jumps: Linux 4.14.
    case v2
    /// Adds 32-bit jumps (and ALU32 code): Linux 5.1.
    case v3

    /// What kprobe-run generates first unless told: the newest set the kernel runs, but v2 at
    /// most. LLVM 14's code for each of v2 and v3 fails the verifier where the other passes: v3
    /// does 32-bit (ALU32) arithmetic whose results the verifier does not bound in the upper half
    /// (a 32-bit division leaves the register unknown, on 6.18 too), so an array index that v2
    /// code keeps in range is refused (BCC's libbpf-tools cpufreq); v2 checks a zero-extended
    /// copy of a 32-bit argument and indexes with another (softirqs). v2 passes more of them, so
    /// it comes first and `fallback` second.
    public static func preferred(upTo newest: BPFCPU) -> BPFCPU {
        min(newest, .v2)
    }

    /// The set to compile for when the kernel's verifier refuses the code of `chosen`: the
    /// newest the kernel runs when that is newer (v3 after v2), else nil.
    public static func fallback(after chosen: BPFCPU, upTo newest: BPFCPU) -> BPFCPU? {
        newest > chosen ? newest : nil
    }

    public static func < (left: BPFCPU, right: BPFCPU) -> Bool {
        allCases.firstIndex(of: left)! < allCases.firstIndex(of: right)!
    }

    /// The newest set a kernel of this release ("6.1.0-13-amd64") runs; v1 when it does not parse.
    public static func newest(forRelease release: String) -> BPFCPU {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return .v1 }
        return newest(major: numbers[0], minor: numbers[1])
    }

    static func newest(major: Int, minor: Int) -> BPFCPU {
        if (major, minor) >= (5, 1) { return .v3 }
        if (major, minor) >= (4, 14) { return .v2 }
        return .v1
    }

    /// The newest set for the kernel a header tree belongs to, from its
    /// include/generated/uapi/linux/version.h (kheaders archives and build trees have it); nil
    /// when the tree does not say.
    /// `read` reads a file of the tree still in memory; the file system answers what it does not.
    public static func newest(forHeaderTree root: String, read: ((String) -> String?)? = nil) -> BPFCPU? {
        let candidates = [root + "/include/generated/uapi/linux/version.h", root + "/usr/include/linux/version.h"]
        for path in candidates {
            guard let text = read?(path) ?? (try? FileSystem.readString(path)) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("#define LINUX_VERSION_CODE") {
                guard let code = Int(line.split(separator: " ").last ?? "") else { continue }
                return newest(major: code >> 16, minor: (code >> 8) & 0xff)
            }
        }
        return nil
    }
}
