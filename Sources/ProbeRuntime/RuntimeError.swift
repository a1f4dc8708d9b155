import KprobeSupport

/// A failure while loading, attaching or running a probe. The kind decides the exit status:
/// `.rejected` (5) when the verifier refuses a program, `.attach` (6) when a probe point cannot be
/// used, `.notPermitted` (7) when the kernel refuses the caller, `.usage` (2) for bad --attach
/// specs, `.internal` (1) for everything else. The kind carries all of that, so no type of its
/// own is needed.
public typealias RuntimeError = Failure
