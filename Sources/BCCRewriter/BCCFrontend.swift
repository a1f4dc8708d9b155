import CClang
import ProbeCompiler
import KprobeSupport

/// A BCC program rewritten into libbpf-style C.
public struct BCCRewrite: Sendable {
    /// The C to compile instead of the user's. It includes BCCPrelude.helpersPath and keeps the
    /// user's line numbers (#line), so diagnostics name the user's file and lines.
    public var source: String
    /// Files the compile needs in addition to the request's own (BCC's helpers and proto.h).
    public var virtualFiles: [VirtualFile]
    /// Flags the compile needs in addition to the request's own (the include directory of
    /// `<bcc/…>` headers).
    public var arguments: [String]
    public var metadata: ProbeMetadata
}

/// Rewrites BCC's C dialect into libbpf-style C with the help of libclang's AST.
public enum BCCFrontend {
    /// Parses `source` (as the file `path`) with libclang, as C for `triple` with `arguments`
    /// (the kernel-header flags the compile uses), and rewrites it.
    ///
    /// - Parameters:
    ///   - virtualFiles: files the parse needs beyond the BCC prelude (libbpf's headers,
    ///     TracepointFormat.header's structs); pass the same files to the compile.
    ///   - syscallPrefix: the running kernel's prefix of system call functions, e.g.
    ///     "__x64_sys_" (found in /proc/kallsyms), or "" for a kernel without syscall wrappers.
    ///     `kprobe__sys_NAME` attaches to PREFIX + NAME, and the extra arguments of
    ///     `syscall__*` functions come from the user registers the wrapper receives.
    public static func rewrite(source: String, path: String, triple: String, arguments: [String],
                               virtualFiles: [VirtualFile] = [], syscallPrefix: String = "") throws(Failure) -> BCCRewrite {
        let unit = try ParsedUnit(source: source, path: path, triple: triple, arguments: arguments,
                                  files: BCCPrelude.files + virtualFiles)
        if let errors = unit.errors() {
            throw Failure(.compile, errors)
        }
        var rewriter = Rewriter(unit: unit, source: Array(source.utf8), path: path, syscallPrefix: syscallPrefix)
        try rewriter.run()
        return BCCRewrite(source: rewriter.output(), virtualFiles: BCCPrelude.compileFiles,
                          arguments: BCCPrelude.compileArguments, metadata: rewriter.metadata)
    }
}

/// The rewrite of one BCC program: the state its passes (Passes/) share, and the order they run in.
struct Rewriter {
    let unit: ParsedUnit
    let source: [UInt8]
    let path: String
    let syscallPrefix: String
    var edits: TextEdits
    var metadata = ProbeMetadata()
    var tables: [String: Table] = [:]
    /// USR of each table variable → its name.
    var tableUSRs: [String: String] = [:]
    var macroRanges: [Range<Int>] = []
    var functions: [Node] = []
    /// Function name → the section of a program (Passes/Programs.swift); helpers have none.
    var sections: [String: String] = [:]
    /// Variables and parameters holding kernel pointers (keys from `declarationKey`).
    var external: Set<String> = []
    var problems: [String] = []
    var counter = 0
    var hasLicense = false

    init(unit: ParsedUnit, source: [UInt8], path: String, syscallPrefix: String) {
        self.unit = unit
        self.source = source
        self.path = path
        self.syscallPrefix = syscallPrefix
        self.edits = TextEdits(source: source)
    }

    mutating func run() throws(Failure) {
        let written = String(decoding: source, as: UTF8.self)
        hasLicense = written.contains("SEC(\"license\")") || written.contains("section(\"license\")")
        for cursor in children(of: unit.root) {
            var file: CXFile?
            clang_getExpansionLocation(clang_getCursorLocation(cursor), &file, nil, nil, nil)
            guard let file, file == unit.mainFile else { continue }
            switch cursor.kind {
            case CXCursor_MacroExpansion:
                if let range = range(of: cursor) { macroRanges.append(range) }
            case CXCursor_VarDecl:
                try declareTable(cursor)
                if cursor.spelling == "_license" || cursor.spelling == "LICENSE" { hasLicense = true }
            case CXCursor_FunctionDecl where clang_isCursorDefinition(cursor) != 0:
                functions.append(buildTree(cursor, parent: nil))
            default:
                break
            }
        }
        for table in tables.values { emitTable(table) }
        assignSections()
        markExternalSources()
        propagateExternal()
        for function in functions { rejectCallsOfPrograms(in: function) }
        for function in functions { rewriteFunction(function) }
        for function in functions { rewritePackets(in: function) }
        for function in functions {
            walkTree(function) { node in
                if node.kind == CXCursor_CallExpr { rewriteTableCall(node) } else { rewriteKernelRead(node) }
            }
        }
        classifyHistograms()
        if !problems.isEmpty {
            throw Failure(.compile, problems.joined(separator: "\n"))
        }
    }

    func output() -> String {
        var text = "#include \"\(BCCPrelude.helpersPath)\"\n#line 1 \"\(escaped(path))\"\n"
        text += edits.render()
        text += "\n" + BCCPrelude.usdtInclude(for: String(decoding: source, as: UTF8.self))
        if !hasLicense {
            // At the end, so that a BPF_LICENSE the program defines anywhere counts.
            text += "#ifndef BPF_LICENSE\n#define BPF_LICENSE GPL\n#endif\n"
            text += "char _license[] SEC(\"license\") = __BCC_LICENSE(BPF_LICENSE);\n"
        }
        // The runtime decodes records through these types' BTF, which clang emits only for
        // types that a global refers to (a local variable's type is not enough).
        for (table, type) in metadata.events.sorted(by: { $0.key < $1.key })
        where !type.contains("(") && !type.contains("[") {
            text += "\(type) *__kprobe_run_event_\(table) __attribute__((unused));\n"
        }
        text += metadata.cDefinition() + "\n"
        return text
    }

    private func escaped(_ text: String) -> String {
        text.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"")
    }
}
