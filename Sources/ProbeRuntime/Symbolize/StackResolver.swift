import CLibBPF
import Glibc
import KprobeSupport

/// Turns stack ids (from `bpf_get_stackid`) into symbolized frames through the object's
/// BPF_MAP_TYPE_STACK_TRACE maps: kernel frames through /proc/kallsyms (read on first use),
/// user frames through the mapped files of the process.
///
/// Convention: in a map key or value struct, an integer field whose name ends in `stack_id`
/// or `stackid` (`kern_stack_id`, `user_stack_id`, `stackid`) is such an id, looked up in the
/// object's (first) stack trace map; the process is the struct's `pid` or `tgid` field, else
/// the `-p`/`-c` process.
final class StackResolver {
    struct TraceMap {
        let name: String
        let fd: Int32
        let depth: Int
    }

    let traceMaps: [TraceMap]
    private var kernel: KernelSymbols?
    private let kallsymsPath: String
    let user = UserSymbolizer()
    let defaultPID: Int32?

    init(traceMaps: [TraceMap], defaultPID: Int32?, kallsymsPath: String = "/proc/kallsyms") {
        self.traceMaps = traceMaps
        self.defaultPID = defaultPID
        self.kallsymsPath = kallsymsPath
    }

    convenience init(maps: [BPFMap], defaultPID: Int32?) {
        let traceMaps = maps.filter { $0.type == BPF_MAP_TYPE_STACK_TRACE && $0.fd >= 0 }
            .map { TraceMap(name: $0.name, fd: $0.fd, depth: $0.valueSize / 8) }
        self.init(traceMaps: traceMaps, defaultPID: defaultPID)
    }

    static func isStackField(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasSuffix("stack_id") || lower.hasSuffix("stackid")
    }

    /// `kern_stack_id` → `kern_stack`, `stackid` → `stack`.
    static func label(_ field: String) -> String {
        for suffix in ["_id", "id"] where field.lowercased().hasSuffix(suffix) {
            return String(field.dropLast(suffix.count))
        }
        return field
    }

    /// Before each report: processes may have exited or exec'd since the last one.
    func newReport() { user.newReport() }

    /// The frames of a stack, leaf first; `.failure(errno)` for the negative ids
    /// bpf_get_stackid returns (e.g. EFAULT: no user stack in a kernel thread).
    func frames(id: Int64, pid: Int32?) -> Result<[Frame], StackError> {
        guard id >= 0 else { return .failure(StackError(code: -id)) }
        guard let map = traceMaps.first else { return .failure(StackError(code: Int64(ENOENT))) }
        var key = UInt32(truncatingIfNeeded: id)
        var addresses = [UInt64](repeating: 0, count: max(map.depth, 1))
        guard bpf_map_lookup_elem(map.fd, &key, &addresses) == 0 else { return .failure(StackError(code: Int64(errno))) }
        var frames: [Frame] = []
        for address in addresses {
            if address == 0 { break }
            if Frame.isKernelAddress(address) {
                if kernel == nil { kernel = KernelSymbols.load(path: kallsymsPath) }
                frames.append(kernel!.frame(address))
            } else {
                frames.append(user.frame(address, pid: pid ?? defaultPID))
            }
        }
        return .success(frames)
    }

    /// Empties every stack trace map (`--clear`), so ids do not run out across intervals.
    func clear() {
        for map in traceMaps { MapReader.deleteAll(fd: map.fd, keySize: 4) }
    }
}

struct StackError: Error, Equatable {
    var code: Int64

    var text: String {
        let name = Errno(Int32(truncatingIfNeeded: code)).description
        return "[no stack: \(name)]"
    }
}
