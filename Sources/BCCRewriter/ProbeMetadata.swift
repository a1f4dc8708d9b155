import KprobeSupport

extension ProbeMetadata {
    /// The C definition that carries this metadata into the object.
    func cDefinition() -> String {
        var literal = "\""
        for byte in json().utf8 {
            switch byte {
            case UInt8(ascii: "\""): literal += "\\\""
            case UInt8(ascii: "\\"): literal += "\\\\"
            case 0x20..<0x7F: literal += String(UnicodeScalar(byte))
            default: literal += "\\" + String(byte, radix: 8).leftPadded(to: 3)
            }
        }
        literal += "\""
        return "static const char __kprobe_run_meta[] __attribute__((section(\"\(ProbeMetadata.sectionName)\"), used)) = \(literal);"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
