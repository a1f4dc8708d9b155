#if canImport(Glibc)
import Glibc
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
        guard let result = try? ChildProcess.run([tool, name], stdout: .head(4096)), result.status.succeeded else {
            return nil
        }
        return String(decoding: result.stdout, as: UTF8.self).split(separator: "\n").first.map(String.init)
    }
}
