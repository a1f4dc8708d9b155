import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// That a run of ours loaded the kheaders module: `headers/.kheaders-loaded`, holding that run's
/// pid, written under the headers lock before the module is loaded and removed once it is
/// unloaded again (or kept with --keep-module). A run killed in between leaves the record; the
/// next run finds it with its pid gone and, holding the lock (so no run of ours is reading the
/// archive), unloads the module.
struct ModuleRecord {
    static let name = ".kheaders-loaded"

    var headersDirectory: String

    var path: String { headersDirectory + "/" + Self.name }

    func record() {
        try? AtomicFile.write(Array("\(getpid())\n".utf8), to: path, relativeTo: AT_FDCWD, mode: 0o600)
    }

    func clear() { unlink(path) }

    var recordedPID: pid_t? {
        (try? FileSystem.readString(path, limit: 64)).flatMap { pid_t($0.trimmingSpaces) }
    }

    /// The run that loaded the module is gone without unloading it.
    var isLeftBehind: Bool {
        guard let pid = recordedPID, pid > 0 else { return FileSystem.exists(path) }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// Unloads a module a killed run left loaded (when it still is) and drops the record; true
    /// if there was one to act on. Call with the headers lock held.
    func cleanUp(isLoaded: Bool, unload: () -> Void, log: (String) -> Void) -> Bool {
        guard isLeftBehind else { return false }
        if isLoaded {
            log("the kheaders module was loaded by kprobe-run (pid \(recordedPID.map(String.init) ?? "?")), which was stopped before unloading it; unloading it now")
            unload()
        }
        clear()
        return true
    }

    /// For `headers status`.
    var statusLine: String? {
        guard let pid = recordedPID else { return nil }
        return isLeftBehind
            ? "kheaders module: loaded by kprobe-run pid \(pid), which was stopped before unloading it; the next run unloads it"
            : "kheaders module: loaded by kprobe-run pid \(pid), which is still running"
    }
}
