/// JSON strings, escaped: the one escaper for every JSON kprobe-run writes (output lines, the
/// object metadata). Objects are assembled by their writers (`JSONLine`, `ProbeMetadata.json`).
public enum JSON {
    public static func writeString(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    let digits = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    public static func string(_ text: String) -> String {
        var out = ""
        writeString(text, into: &out)
        return out
    }
}
