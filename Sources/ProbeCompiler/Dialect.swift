import KprobeSupport

/// Which C dialect a probe is written in.
public enum Dialect: String, Sendable, CaseIterable {
    /// BCC's: tables declared with BPF_HASH(…) and friends, methods on them, implicit kernel
    /// reads, attach points named by convention.
    case bcc
    /// Plain libbpf C: SEC() names, BTF-defined maps, explicit helpers.
    case libbpf

    static let bccMacros = [
        "BPF_HASH(", "BPF_ARRAY(", "BPF_HISTOGRAM(", "BPF_PERCPU_ARRAY(", "BPF_PERCPU_HASH(",
        "BPF_TABLE(", "BPF_F_TABLE(", "BPF_PERF_OUTPUT(", "BPF_RINGBUF_OUTPUT(", "BPF_STACK_TRACE(",
        "BPF_PROG_ARRAY(", "BPF_QUEUE(", "BPF_STACK(", "TRACEPOINT_PROBE(", "RAW_TRACEPOINT_PROBE(",
        "BPF_TABLE_PUBLIC(", "BPF_TABLE_SHARED(", "BPF_LPM_TRIE(", "BPF_ARRAY_OF_MAPS(", "BPF_HASH_OF_MAPS(",
        "BPF_PERF_ARRAY(", "BPF_STACK_TRACE_BUILDID(", "KFUNC_PROBE(", "KRETFUNC_PROBE(", "LSM_PROBE(", "KMOD_RET(",
        "<bcc/proto.h>", "cursor_advance(",
        "bpf_usdt_readarg(", "bpf_usdt_readarg_p(",
    ]

    /// Cheap text heuristics, no parsing (runs in the parent, before any compiler is started).
    /// A BCC table or probe macro decides it; otherwise a conventionally named function in a file
    /// that has no SEC( at all.
    public static func detect(source: String) -> Dialect {
        let code = stripCommentsAndStrings(source)
        if bccMacros.contains(where: { code.contains($0) }) { return .bcc }
        if code.contains("SEC(") { return .libbpf }
        for prefix in BCCName.prefixes where containsIdentifier(startingWith: prefix, in: code) {
            return .bcc
        }
        return .libbpf
    }

    private static func containsIdentifier(startingWith prefix: String, in code: String) -> Bool {
        let bytes = Array(code.utf8)
        let pattern = Array(prefix.utf8)
        guard bytes.count > pattern.count else { return false }
        var index = 0
        while index + pattern.count < bytes.count {
            if bytes[index..<(index + pattern.count)].elementsEqual(pattern),
               index == 0 || !isIdentifierByte(bytes[index - 1]),
               isIdentifierByte(bytes[index + pattern.count]) {
                return true
            }
            index += 1
        }
        return false
    }

    static func isIdentifierByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
    }

    /// The source with comments removed and string/char literal contents blanked, so that a
    /// macro name mentioned in a comment or a message does not count.
    static func stripCommentsAndStrings(_ source: String) -> String {
        var out: [UInt8] = []
        let bytes = Array(source.utf8)
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            let next: UInt8 = i + 1 < bytes.count ? bytes[i + 1] : 0
            if c == UInt8(ascii: "/") && next == UInt8(ascii: "/") {
                while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
            } else if c == UInt8(ascii: "/") && next == UInt8(ascii: "*") {
                i += 2
                while i + 1 < bytes.count && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 2
                out.append(UInt8(ascii: " "))
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                out.append(c)
                i += 1
                while i < bytes.count && bytes[i] != c && bytes[i] != UInt8(ascii: "\n") {
                    if bytes[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                out.append(c)
                i += 1
            } else {
                out.append(c)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
