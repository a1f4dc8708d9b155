#if canImport(Glibc)
import Glibc
#endif

/// A C `errno` value with its text, for messages that say which system call failed and why.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(errno) }

    public var description: String { String(cString: strerror(rawValue)) }

    /// EPERM/EACCES: the caller lacks a privilege rather than the input being wrong.
    public var isPermission: Bool { rawValue == EPERM || rawValue == EACCES }
}
