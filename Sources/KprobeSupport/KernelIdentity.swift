#if canImport(Glibc)
import Glibc
#endif

/// Facts about the running kernel that name its cache entries.
public enum RunningKernel {
    /// `uname -r`.
    public static var release: String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }

    /// `uname -m`.
    public static var machine: String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }

    /// The kernel's GNU build id from /sys/kernel/notes, hex; nil where the kernel has none.
    /// A rebuilt kernel with the same release string gets a different id.
    public static var buildID: String? {
        guard let notes = try? FileSystem.read("/sys/kernel/notes") else { return nil }
        var offset = 0
        func word(_ at: Int) -> Int {
            Int(UInt32(notes[at]) | UInt32(notes[at + 1]) << 8 | UInt32(notes[at + 2]) << 16 | UInt32(notes[at + 3]) << 24)
        }
        while offset + 12 <= notes.count {
            let nameSize = word(offset), descSize = word(offset + 4), type = word(offset + 8)
            let nameStart = offset + 12
            let descStart = nameStart + (nameSize + 3) & ~3
            let next = descStart + (descSize + 3) & ~3
            guard next <= notes.count else { break }
            // NT_GNU_BUILD_ID = 3, owner "GNU\0".
            if type == 3, nameSize == 4, Array(notes[nameStart..<nameStart + 3]) == Array("GNU".utf8) {
                return Hex.encode(notes[descStart..<descStart + descSize])
            }
            offset = next
        }
        return nil
    }
}
