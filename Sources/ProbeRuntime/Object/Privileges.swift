import KprobeSupport

/// The effective capabilities, to tell "run as root" apart from "root, yet the kernel says no".
enum Privileges {
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// CAP_SYS_ADMIN, or CAP_BPF together with CAP_PERFMON, in CapEff of /proc/self/status.
    static var canUseBPF: Bool {
        guard let status = try? FileSystem.readString("/proc/self/status") else { return false }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            guard let mask = UInt64(line.dropFirst("CapEff:".count).trimmingSpaces, radix: 16) else { return false }
            func has(_ bit: Int) -> Bool { mask & (1 << UInt64(bit)) != 0 }
            return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
        }
        return false
    }
}
