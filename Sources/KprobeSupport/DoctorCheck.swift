/// One line of `kprobe-run doctor`: something kprobe-run may need, whether this kernel and
/// process have it, and what to do when not. Each stage checks what it knows about.
public struct DoctorCheck: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Present and usable.
        case ok
        /// Present with a limit worth knowing (e.g. SELinux enforcing, lockdown).
        case limited
        /// Absent or refused: what needs it fails.
        case missing
    }

    /// A short stable name ("btf", "kprobes"), the key in `--format json`.
    public var name: String
    public var status: Status
    /// What was found, in words.
    public var detail: String
    /// What to do about it, when it is not ok.
    public var fix: String?

    public init(_ name: String, _ status: Status, _ detail: String, fix: String? = nil) {
        self.name = name
        self.status = status
        self.detail = detail
        self.fix = fix
    }
}
