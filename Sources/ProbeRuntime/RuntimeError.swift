import KprobeSupport

/// A failure while loading, attaching or running a probe. The kind decides the exit status:
/// `.rejected` (5) when the verifier refuses a program, `.attach` (6) when a probe point cannot be
/// used, `.notPermitted` (7) when the kernel refuses the caller, `.usage` (2) for bad --attach
/// specs, `.internal` (1) for everything else.
public struct RuntimeError: KprobeRunError {
    public var kind: FailureKind
    public var message: String

    public init(_ kind: FailureKind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    init(_ failure: Failure) {
        self.init(failure.kind, failure.message)
    }
}
