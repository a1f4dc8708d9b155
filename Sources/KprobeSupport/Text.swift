extension StringProtocol {
    /// Without the spaces, tabs and line ends around it: how values in /proc, /sys and tracefs
    /// files and in tool output are padded. Other Unicode whitespace is kept, as those files
    /// never pad with it and a name could contain it.
    public var trimmingSpaces: SubSequence {
        func isPadding(_ character: Character) -> Bool {
            character == " " || character == "\t" || character == "\n" || character == "\r" || character == "\r\n"
        }
        guard let first = firstIndex(where: { !isPadding($0) }), let last = lastIndex(where: { !isPadding($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}

extension String {
    /// With control characters (and DEL) shown as `\xNN`, for names from untrusted input (archive
    /// members, file names) printed to a terminal, where an escape sequence could rewrite the screen.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || (0x80..<0xa0).contains($0.value) }) else { return self }
        var result = ""
        for scalar in unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                let hex = String(scalar.value, radix: 16)
                result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
