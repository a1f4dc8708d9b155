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
