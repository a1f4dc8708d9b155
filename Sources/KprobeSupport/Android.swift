#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Facts about an Android system, for messages and defaults. A phone has no glibc user database,
/// no /var or /tmp, and SELinux decides over bpf() even for root, so advice differs there.
public enum AndroidSystem {
    static let buildPropFiles = ["/system/build.prop", "/vendor/build.prop", "/system/system/build.prop"]
    static let getpropPaths = ["/system/bin/getprop"]
    public static let selinuxEnforcePath = "/sys/fs/selinux/enforce"

    public static var isAndroid: Bool {
        buildPropFiles.contains(where: FileSystem.isRegularFile) || getpropPaths.contains { access($0, X_OK) == 0 }
    }

    /// A system property (`ro.build.type`, `ro.product.cpu.abi`, …): from the build.prop files,
    /// else from getprop, which also knows properties set at boot.
    public static func property(_ name: String) -> String? {
        for file in buildPropFiles {
            guard let text = try? FileSystem.readString(file) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix(name + "=") {
                let value = line.dropFirst(name.count + 1)
                if !value.isEmpty { return String(value) }
            }
        }
        for tool in getpropPaths where access(tool, X_OK) == 0 {
            if let value = runGetprop(tool, name), !value.isEmpty { return value }
        }
        return nil
    }

    /// The POSIX shell for `sh -c`: /bin/sh, or /system/bin/sh on Android, which has no /bin.
    public static var shell: String {
        access("/bin/sh", X_OK) == 0 || access("/system/bin/sh", X_OK) != 0 ? "/bin/sh" : "/system/bin/sh"
    }

    /// nil where SELinux is absent or not mounted.
    public static var selinuxEnforcing: Bool? {
        guard let text = try? FileSystem.readString(selinuxEnforcePath) else { return nil }
        return text.hasPrefix("1")
    }

    /// What to do when bpf() or perf_event_open is refused with SELinux enforcing; nil otherwise.
    public static var permissionAdvice: String? {
        guard selinuxEnforcing == true else { return nil }
        guard isAndroid else {
            return "SELinux is enforcing and may deny bpf() even to root: check the audit log (e.g. 'setenforce 0' to test)"
        }
        let type = property("ro.build.type") ?? "unknown"
        if type == "user" {
            return "SELinux is enforcing on this Android user build (ro.build.type=user), which denies bpf() and perf_event_open to the shell; use a userdebug or eng build"
        }
        return "SELinux is enforcing on this Android device and denies bpf() and perf_event_open to the shell; on a userdebug or eng build run 'adb root' and 'adb shell setenforce 0' (setenforce 1 restores it), then try again"
    }

    /// getprop prints the value and a newline; anything else (missing tool, no value) is nil.
    private static func runGetprop(_ tool: String, _ name: String) -> String? {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(tool), strdup(name), nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, environ)
        close(fds[1])
        defer { close(fds[0]) }
        guard spawned == 0 else { return nil }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while output.count < 4096 {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        guard status == 0 else { return nil }
        let text = String(decoding: output, as: UTF8.self)
        return text.split(separator: "\n").first.map(String.init)
    }
}
