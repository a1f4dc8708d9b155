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
