/// What went wrong, as far as the shell running kprobe-run is concerned.
///
/// Each kind has its own exit status so that scripts can tell a broken probe from a kernel that
/// cannot run it. The numbers are part of the documented interface (README, "Exit codes").
public enum FailureKind: Int32, Sendable, CaseIterable {
    case `internal` = 1
    case usage = 2
    case compile = 3
    case noKernelHeaders = 4
    case rejected = 5
    case attach = 6
    case notPermitted = 7

    public var exitCode: Int32 { rawValue }

    /// What the status means, as `--help` and the README's exit-code table say it.
    public var meaning: String {
        switch self {
        case .internal: "internal error"
        case .usage: "usage error"
        case .compile: "compile error"
        case .noKernelHeaders: "no kernel headers or types"
        case .rejected: "the kernel rejected the program"
        case .attach: "attach failed"
        case .notPermitted: "not permitted"
        }
    }

    /// Every status in one line, 0 included: "0 ok, 1 internal error, …".
    public static var summary: String {
        (["0 ok"] + allCases.map { "\($0.rawValue) \($0.meaning)" }).joined(separator: ", ")
    }
}

/// An error every stage throws: a kind for the exit status and a message a user can act on.
public protocol KprobeRunError: Error, CustomStringConvertible, Sendable {
    var kind: FailureKind { get }
    var message: String { get }
}

extension KprobeRunError {
    public var description: String { message }
}

/// The plain carrier for errors that need no type of their own.
public struct Failure: KprobeRunError {
    public var kind: FailureKind
    public var message: String

    public init(_ kind: FailureKind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}
