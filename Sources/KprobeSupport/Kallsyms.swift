#if canImport(Glibc)
import Glibc
#endif

/// /proc/kallsyms, read as a stream of lines: `ADDRESS TYPE NAME [MODULE]`. The kernel formats
/// the file while it is read (megabytes, about 0.2 s), so a reader that finds what it wants
/// early stops there.
public enum Kallsyms {
    public static let path = "/proc/kallsyms"

    public struct Symbol {
        /// 0 for every symbol when kptr_restrict hides addresses.
        public var address: UInt64
        /// t, T, w, W for text; see nm(1).
        public var type: UInt8
        public var name: ArraySlice<UInt8>
        public var module: ArraySlice<UInt8>?

        public var isText: Bool {
            type == UInt8(ascii: "t") || type == UInt8(ascii: "T") || type == UInt8(ascii: "w") || type == UInt8(ascii: "W")
        }
    }

    /// Calls `body` with each symbol of the file at `path` until it returns false; false when the
    /// file cannot be read.
    @discardableResult
    public static func scan(path: String = path, _ body: (Symbol) -> Bool) -> Bool {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return false }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in retryOnInterrupt { read(fd.rawValue, buffer.baseAddress, buffer.count) } }
            guard count > 0 else {
                if count == 0, !pending.isEmpty { _ = forEach(in: pending[...], body) }
                return count == 0
            }
            pending += chunk[0..<count]
            guard let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) else { continue }
            if !forEach(in: pending[...lastNewline], body) { return true }
            pending.removeSubrange(...lastNewline)
        }
    }

    /// Calls `body` with each symbol of kallsyms text until it returns false; false if it did.
    @discardableResult
    public static func forEach(in text: ArraySlice<UInt8>, _ body: (Symbol) -> Bool) -> Bool {
        var lineStart = text.startIndex
        while lineStart < text.endIndex {
            let lineEnd = text[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? text.endIndex
            if let symbol = parse(text[lineStart..<lineEnd]), !body(symbol) { return false }
            lineStart = lineEnd + 1
        }
        return true
    }

    /// Whether the running kernel has a symbol named `name` (true when kallsyms is unreadable:
    /// then nothing can be said against it).
    public static func contains(_ name: String) -> Bool {
        let wanted = Array(name.utf8)
        var found = false
        let readable = scan { symbol in
            found = symbol.name.elementsEqual(wanted)
            return !found
        }
        return found || !readable
    }

    static func parse(_ line: ArraySlice<UInt8>) -> Symbol? {
        let fields = line.split(maxSplits: 3, whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        guard fields.count >= 3, fields[1].count == 1 else { return nil }
        var address: UInt64 = 0
        for digit in fields[0] {
            let value: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = digit - UInt8(ascii: "A") + 10
            default: return nil
            }
            address = address << 4 | UInt64(value)
        }
        var module: ArraySlice<UInt8>?
        if fields.count >= 4 {
            let rest = fields[3].prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
            if rest.first == UInt8(ascii: "["), rest.last == UInt8(ascii: "]"), rest.count >= 2 { module = rest.dropFirst().dropLast() }
        }
        return Symbol(address: address, type: fields[1].first!, name: fields[2], module: module)
    }
}
