import KprobeSupport

/// The run of `#include` lines a probe starts with, when a precompiled header of exactly those
/// lines can stand in for them.
///
/// The header holds the probe's own leading includes, in the probe's order, and nothing else,
/// so a compile that loads it sees the same declarations, macros and `__COUNTER__` as one that
/// reads the headers: the object is the same. A probe that defines or undefines a macro (or
/// does anything else) before its first include would change how those headers read, so it
/// gets no precompiled header at all.
public struct PrecompiledPrefix: Sendable, Equatable {
    /// Where the prefix header appears to the compiler, both when the precompiled header is
    /// built and when it is loaded (clang checks that its main file is still there).
    public static let virtualPath = "/kprobe-run-virtual/pch/prefix.h"

    /// The include directives, one per line, as the probe spelled the file names.
    public var text: String
    public var includeCount: Int

    public enum Decision: Sendable, Equatable {
        case use(PrecompiledPrefix)
        case skip(reason: String)
    }

    /// `sourceDirectory` is where the probe's quoted includes are looked up first: a quoted
    /// include of a file there is the user's own header and stays out of the prefix.
    public static func analyze(source: String, sourceDirectory: String) -> Decision {
        var scanner = Scanner(Array(source.utf8))
        var lines: [String] = []
        var stopReason = "it does not start with #include lines"
        scanning: while true {
            scanner.skipSpaceAndComments()
            guard let item = scanner.nextItem() else {
                stopReason = "it has nothing after its #include lines"
                break
            }
            switch item {
            case .include(let name, let quoted):
                if quoted, FileSystem.exists(sourceDirectory + "/" + name) {
                    stopReason = "\"\(name)\" is the probe's own header"
                    break scanning
                }
                lines.append(quoted ? "#include \"\(name)\"" : "#include <\(name)>")
            case .directive(let name):
                stopReason = "#\(name) comes before its first #include"
                break scanning
            case .other:
                break scanning
            }
        }
        if lines.isEmpty { return .skip(reason: stopReason) }
        return .use(PrecompiledPrefix(text: lines.joined(separator: "\n") + "\n", includeCount: lines.count))
    }

    /// The directory clang searches first for the probe's quoted includes.
    public static func sourceDirectory(of sourcePath: String) -> String {
        FileSystem.directory(of: sourcePath)
    }

    private enum Item {
        case include(name: String, quoted: Bool)
        case directive(String)
        case other
    }

    /// Just enough of C's lexical rules for the lines before a probe's first declaration.
    private struct Scanner {
        let bytes: [UInt8]
        var at = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        func peek(_ offset: Int = 0) -> UInt8? { at + offset < bytes.count ? bytes[at + offset] : nil }

        mutating func skipSpaceAndComments() {
            while let byte = peek() {
                if byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d || byte == 0x0c || byte == 0x0b {
                    at += 1
                } else if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "/") {
                    while let next = peek(), next != 0x0a { at += 1 }
                } else if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "*") {
                    at += 2
                    while at < bytes.count, !(bytes[at] == UInt8(ascii: "*") && peek(1) == UInt8(ascii: "/")) { at += 1 }
                    at = min(at + 2, bytes.count)
                } else {
                    return
                }
            }
        }

        /// Spaces, tabs and comments that stay on the current line.
        mutating func skipInlineSpace() -> Bool {
            while let byte = peek() {
                if byte == 0x20 || byte == 0x09 {
                    at += 1
                } else if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "*") {
                    let start = at
                    at += 2
                    while at < bytes.count, !(bytes[at] == UInt8(ascii: "*") && peek(1) == UInt8(ascii: "/")) {
                        if bytes[at] == 0x0a {
                            at = start
                            return false
                        }
                        at += 1
                    }
                    at = min(at + 2, bytes.count)
                } else {
                    break
                }
            }
            return true
        }

        /// True when only a line comment or nothing follows on this line (a continuation
        /// backslash or anything else means the line is not a plain include).
        mutating func atEndOfLine() -> Bool {
            guard skipInlineSpace() else { return false }
            guard let byte = peek() else { return true }
            if byte == 0x0a || byte == 0x0d { return true }
            if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "/") {
                var end = at
                while end < bytes.count, bytes[end] != 0x0a { end += 1 }
                // A line comment ending in a backslash continues onto the next line.
                var last = end - 1
                if last >= 0, bytes[last] == 0x0d { last -= 1 }
                return last < 0 || bytes[last] != UInt8(ascii: "\\")
            }
            return false
        }

        mutating func identifier() -> String {
            let start = at
            while let byte = peek(), byte == UInt8(ascii: "_") || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) {
                at += 1
            }
            return String(decoding: bytes[start..<at], as: UTF8.self)
        }

        mutating func nextItem() -> Item? {
            guard let byte = peek() else { return nil }
            guard byte == UInt8(ascii: "#") else { return .other }
            at += 1
            guard skipInlineSpace() else { return .other }
            let name = identifier()
            guard name == "include" else { return .directive(name.isEmpty ? "(empty directive)" : name) }
            guard skipInlineSpace(), let open = peek(), open == UInt8(ascii: "<") || open == UInt8(ascii: "\"") else { return .other }
            let close = open == UInt8(ascii: "<") ? UInt8(ascii: ">") : UInt8(ascii: "\"")
            at += 1
            let start = at
            while let next = peek(), next != close, next != 0x0a, next != UInt8(ascii: "\\") { at += 1 }
            guard peek() == close, at > start else { return .other }
            let fileName = String(decoding: bytes[start..<at], as: UTF8.self)
            at += 1
            guard atEndOfLine() else { return .other }
            return .include(name: fileName, quoted: open == UInt8(ascii: "\""))
        }
    }
}
