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
                          arguments: [BCCPrelude.includeArgument], metadata: rewriter.metadata)
    }
}

/// An AST node of the main file, with its parent and its byte range there.
final class Node {
    let cursor: CXCursor
    let kind: CXCursorKind
    let range: Range<Int>?
    weak var parent: Node?
    var children: [Node] = []

    init(cursor: CXCursor, range: Range<Int>?) {
        self.cursor = cursor
        self.kind = cursor.kind
        self.range = range
    }

    var type: CXType { cursor.type }
    var referenced: CXCursor { cursor.referenced }
    var isTransparent: Bool { kind == CXCursor_ParenExpr || kind == CXCursor_UnexposedExpr }
    var expressionChildren: [Node] { children.filter { clang_isExpression($0.kind) != 0 } }
}

struct Table {
    var name: String
    var kind: String
    var keyType: String
    var leafType: String
    var keyIsInt: Bool
    var maxEntries: Int
    var flags: Int
    var range: Range<Int>
}

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

    // MARK: Driving

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
        markExternalSources()
        propagateExternal()
        for function in functions { rewriteFunction(function) }
        for function in functions { walkTree(function) { rewriteNode($0) } }
        classifyHistograms()
        if !problems.isEmpty {
            throw Failure(.compile, problems.joined(separator: "\n"))
        }
    }

    func output() -> String {
        var text = "#include \"\(BCCPrelude.helpersPath)\"\n#line 1 \"\(escaped(path))\"\n"
        text += edits.render()
        text += "\n" + BCCPrelude.usdtInclude(for: String(decoding: source, as: UTF8.self))
        if !hasLicense { text += "char _license[] SEC(\"license\") = \"GPL\";\n" }
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

    // MARK: Positions

    func range(of cursor: CXCursor) -> Range<Int>? {
        let extent = clang_getCursorExtent(cursor)
        guard let start = fileOffset(clang_getRangeStart(extent), in: unit.mainFile),
              let end = fileOffset(clang_getRangeEnd(extent), in: unit.mainFile), start <= end, end <= source.count else { return nil }
        return start..<end
    }

    func text(_ range: Range<Int>) -> String { String(decoding: source[range], as: UTF8.self) }

    func line(of offset: Int) -> Int { source[..<min(offset, source.count)].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } }

    func newlines(in range: Range<Int>) -> Int { source[range].reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } }

    /// Whether a node's text can be replaced: its range is where it is written, not the whole
    /// use of a macro whose body it is part of.
    func editable(_ node: Node) -> Bool {
        guard let range = node.range, !range.isEmpty else { return false }
        for macro in macroRanges {
            if macro.upperBound <= range.lowerBound || range.upperBound <= macro.lowerBound { continue }
            if macro.lowerBound >= range.lowerBound && macro.upperBound <= range.upperBound && macro != range { continue }
            if range.lowerBound > macro.lowerBound && range.upperBound <= macro.upperBound { continue }
            if macro == range {
                var ancestor = node.parent
                var current = node
                while let up = ancestor, up.range == range {
                    if !current.isTransparent && !up.isTransparent { return false }
                    current = up
                    ancestor = up.parent
                }
                if current !== node && !node.isTransparent && current.kind != node.kind { return false }
                continue
            }
            return false
        }
        return true
    }

    func buildTree(_ cursor: CXCursor, parent: Node?) -> Node {
        let node = Node(cursor: cursor, range: range(of: cursor))
        node.parent = parent
        node.children = children(of: cursor).map { buildTree($0, parent: node) }
        return node
    }


    func declarationKey(_ cursor: CXCursor) -> String {
        var offset: UInt32 = 0
        var file: CXFile?
        clang_getSpellingLocation(clang_getCursorLocation(cursor), &file, nil, nil, &offset)
        return "\(offset):\(cursor.spelling)"
    }

    // MARK: Tables

    mutating func declareTable(_ cursor: CXCursor) throws(Failure) {
        let annotation = children(of: cursor).first { $0.kind == CXCursor_AnnotateAttr }?.spelling ?? ""
        let marker = "kprobe_run_bcc_table:"
        guard annotation.hasPrefix(marker) else { return }
        let kind = String(annotation.dropFirst(marker.count))
        let name = cursor.spelling
        guard let range = range(of: cursor) else {
            problems.append("\(path): table \(name) is declared where it cannot be rewritten (inside another macro); declare it with BPF_HASH(…) and friends at file scope")
            return
        }
        var fields: [String: CXType] = [:]
        for field in children(of: clang_getTypeDeclaration(cursor.type)) where field.kind == CXCursor_FieldDecl {
            fields[field.spelling] = field.type
        }
        guard let key = fields["__key"]?.pointee, let leaf = fields["__leaf"]?.pointee,
              let max = fields["__max_entries"], let flags = fields["__flags"] else {
            throw Failure(.internal, "the BCC prelude's table shape changed; table \(name) lacks its fields")
        }
        let table = Table(name: name, kind: kind, keyType: key.spelling, leafType: leaf.spelling,
                          keyIsInt: key.canonical.kind == CXType_Int || key.canonical.kind == CXType_UInt,
                          maxEntries: Int(clang_getArraySize(max)) - 1, flags: Int(clang_getArraySize(flags)) - 1, range: range)
        for typeName in [table.keyType, table.leafType] where typeName.contains("(unnamed") || typeName.contains("(anonymous") {
            problems.append("\(path):\(line(of: range.lowerBound)): table \(name) uses an unnamed struct type; give the struct a name or a typedef")
        }
        tables[name] = table
        tableUSRs[cursor.usr] = name
        metadata.tables[name] = kind
        if kind == "stacktrace" { metadata.stackTraces.append(name) }
    }

    mutating func emitTable(_ table: Table) {
        // The declaration's extent ends at the table's name, inside the macro's parentheses.
        let range = macroRanges.first { $0.lowerBound == table.range.lowerBound && $0.upperBound >= table.range.upperBound } ?? table.range
        var members: [String]
        func typed(_ mapType: String) -> [String] {
            var result = ["__uint(type, \(mapType))", "__uint(max_entries, \(table.maxEntries))",
                          "__type(key, \(table.keyType))", "__type(value, \(table.leafType))"]
            if table.flags != 0 { result.append("__uint(map_flags, \(table.flags))") }
            return result
        }
        switch table.kind {
        case "hash": members = typed("BPF_MAP_TYPE_HASH")
        case "array": members = typed("BPF_MAP_TYPE_ARRAY")
        case "percpu_hash": members = typed("BPF_MAP_TYPE_PERCPU_HASH")
        case "percpu_array": members = typed("BPF_MAP_TYPE_PERCPU_ARRAY")
        case "lru_hash": members = typed("BPF_MAP_TYPE_LRU_HASH")
        case "lru_percpu_hash": members = typed("BPF_MAP_TYPE_LRU_PERCPU_HASH")
        case "lpm_trie": members = typed("BPF_MAP_TYPE_LPM_TRIE")
        case "histogram": members = typed(table.keyIsInt ? "BPF_MAP_TYPE_ARRAY" : "BPF_MAP_TYPE_HASH")
        case "perf_output":
            members = ["__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY)", "__uint(key_size, sizeof(int))", "__uint(value_size, sizeof(__u32))"]
        case "ringbuf":
            members = ["__uint(type, BPF_MAP_TYPE_RINGBUF)", "__uint(max_entries, \(table.maxEntries))"]
        case "stacktrace":
            members = ["__uint(type, BPF_MAP_TYPE_STACK_TRACE)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(__u32))", "__uint(value_size, 127 * sizeof(__u64))"]
        case "prog":
            members = ["__uint(type, BPF_MAP_TYPE_PROG_ARRAY)", "__uint(max_entries, \(table.maxEntries))",
                       "__uint(key_size, sizeof(__u32))", "__uint(value_size, sizeof(__u32))"]
        case "queue", "stack":
            members = ["__uint(type, BPF_MAP_TYPE_\(table.kind.uppercased()))", "__uint(max_entries, \(table.maxEntries))",
                       "__type(value, \(table.leafType))"]
        default:
            problems.append("\(path):\(line(of: table.range.lowerBound)): table \(table.name) has kind \"\(table.kind)\", which kprobe-run does not support; use hash, array, histogram, percpu_hash, percpu_array, lru_hash, lru_percpu_hash, lpm_trie, perf_output, ringbuf, stacktrace, prog, queue or stack")
            return
        }
        let definition = "struct { " + members.map { $0 + "; " }.joined() + "} \(table.name) SEC(\".maps\")"
        edits.replace(range, with: [.text(definition + String(repeating: "\n", count: newlines(in: range)))])
    }

    // MARK: Programs

    enum ContextKind { case ptRegs, other }

    func contextKind(_ type: CXType) -> ContextKind? {
        guard type.isPointer else { return nil }
        var pointee = type.pointee.canonical.spelling
        if pointee.hasPrefix("const ") { pointee.removeFirst(6) }
        if pointee == "struct pt_regs" { return .ptRegs }
        for prefix in ["struct tracepoint__", "struct bpf_raw_tracepoint_args", "struct bpf_perf_event_data",
                       "struct __sk_buff", "struct xdp_md"] where pointee.hasPrefix(prefix) {
            return .other
        }
        return nil
    }

    func parameters(_ function: Node) -> [Node] { function.children.filter { $0.kind == CXCursor_ParmDecl } }

    /// The section of a function that is a program, or nil for a helper function.
    func section(of function: Node) -> String? {
        let name = function.cursor.spelling
        if clang_Cursor_getStorageClass(function.cursor) == CX_SC_Static { return nil }
        if name.hasPrefix("kprobe__") { return "kprobe/" + attachTarget(String(name.dropFirst(8))) }
        if name.hasPrefix("kretprobe__") { return "kretprobe/" + attachTarget(String(name.dropFirst(11))) }
        if name.hasPrefix("tracepoint__") {
            let rest = name.dropFirst(12)
            if let split = rest.firstRange(of: "__") {
                return "tracepoint/\(rest[..<split.lowerBound])/\(rest[split.upperBound...])"
            }
        }
        if name.hasPrefix("raw_tracepoint__") { return "raw_tracepoint/" + name.dropFirst(16) }
        guard let first = parameters(function).first, first.type.isPointer else { return nil }
        var pointee = first.type.pointee.canonical.spelling
        if pointee.hasPrefix("const ") { pointee.removeFirst(6) }
        switch pointee {
        case "struct pt_regs": return "kprobe"
        case "struct bpf_perf_event_data": return "perf_event"
        case "struct __sk_buff": return "socket"
        case "struct xdp_md": return "xdp"
        case "struct bpf_raw_tracepoint_args": return "raw_tp"
        default: return nil
        }
    }

    func attachTarget(_ symbol: String) -> String {
        if !syscallPrefix.isEmpty && symbol.hasPrefix("sys_") { return syscallPrefix + symbol.dropFirst(4) }
        return symbol
    }

    func isSyscallFunction(_ function: Node) -> Bool {
        guard !syscallPrefix.isEmpty else { return false }
        let name = function.cursor.spelling
        if name.hasPrefix("syscall__") { return true }
        for prefix in ["kprobe__", "kretprobe__"] where name.hasPrefix(prefix) {
            let target = attachTarget(String(name.dropFirst(prefix.count)))
            return target.hasPrefix(syscallPrefix)
        }
        return false
    }

    mutating func rewriteFunction(_ function: Node) {
        guard let start = function.range?.lowerBound else { return }
        let name = function.cursor.spelling
        guard let section = section(of: function) else {
            if clang_Cursor_getStorageClass(function.cursor) != CX_SC_Static {
                edits.insert("static __always_inline ", at: start)
            }
            return
        }
        metadata.programs[name] = section
        edits.insert("SEC(\"\(section)\") ", at: start)
        let parameters = parameters(function)
        guard section.hasPrefix("kprobe") || section.hasPrefix("kretprobe"), parameters.count > 1,
              let first = parameters[0].range, let last = parameters[parameters.count - 1].range,
              let body = function.children.last(where: { $0.kind == CXCursor_CompoundStmt }), let bodyStart = body.range?.lowerBound,
              editable(parameters[0]), editable(parameters[parameters.count - 1]) else { return }
        if parameters.count > 7 {
            problems.append("\(path):\(line(of: start)): \(name) has \(parameters.count - 1) arguments after ctx; kprobes can read at most 6 from registers")
            return
        }
        let context = parameters[0].cursor.spelling
        let removed = first.upperBound..<last.upperBound
        edits.replace(removed, with: [.text(String(repeating: "\n", count: newlines(in: removed)))])
        var declarations = ""
        let fromSyscallRegisters = isSyscallFunction(function)
        if fromSyscallRegisters {
            declarations += " struct pt_regs *__bcc_syscall_regs = (struct pt_regs *)PT_REGS_PARM1(\(context));"
        }
        for (index, parameter) in parameters.dropFirst().enumerated() {
            guard let range = parameter.range else { continue }
            let declaration = text(range).replacingAll("\n", with: " ")
            let parameterName = parameter.cursor.spelling
            if fromSyscallRegisters {
                declarations += " \(declaration); bpf_probe_read_kernel(&\(parameterName), sizeof(\(parameterName)), &__BCC_SYSCALL_PARM\(index + 1)(__bcc_syscall_regs));"
            } else {
                declarations += " \(declaration) = (\(parameter.type.spelling))PT_REGS_PARM\(index + 1)(\(context));"
            }
        }
        edits.insert(declarations, at: bodyStart + 1)
    }

    // MARK: Kernel pointers

    func isContext(_ node: Node) -> Bool {
        let stripped = strip(node, throughCasts: true)
        guard stripped.kind == CXCursor_DeclRefExpr else { return false }
        return contextKind(stripped.referenced.type) != nil
    }

    func strip(_ node: Node, throughCasts: Bool) -> Node {
        var current = node
        while current.isTransparent || (throughCasts && current.kind == CXCursor_CStyleCastExpr) {
            guard let inner = current.expressionChildren.last else { break }
            current = inner
        }
        return current
    }

    func unaryOperator(_ node: Node) -> String? {
        guard node.kind == CXCursor_UnaryOperator else { return nil }
        let tokens = unit.tokens(in: clang_getCursorExtent(node.cursor))
        guard let first = tokens.first else { return nil }
        if ["*", "&", "-", "+", "!", "~", "++", "--"].contains(first.spelling) {
            if let operand = node.expressionChildren.first?.range, let start = node.range?.lowerBound, operand.lowerBound > start {
                return first.spelling
            }
        }
        return tokens.last.map { $0.spelling == "++" || $0.spelling == "--" ? "post" + $0.spelling : "?" }
    }

    func binaryOperator(_ node: Node) -> String? {
        guard node.kind == CXCursor_BinaryOperator, let lhs = node.expressionChildren.first?.range else { return nil }
        return unit.tokens(in: clang_getCursorExtent(node.cursor)).first { $0.offset >= lhs.upperBound }?.spelling
    }

    /// The pointer a node dereferences: `p` in `p->f`, `*p` and `p[i]` (not for `.` or for
    /// indexing an array member, which only extend an lvalue).
    func dereferencedPointer(_ node: Node) -> Node? {
        switch node.kind {
        case CXCursor_MemberRefExpr:
            guard let base = node.expressionChildren.first, base.type.isPointer else { return nil }
            return base
        case CXCursor_UnaryOperator:
            return unaryOperator(node) == "*" ? node.expressionChildren.first : nil
        case CXCursor_ArraySubscriptExpr:
            guard let base = node.expressionChildren.first else { return nil }
            if base.kind == CXCursor_UnexposedExpr, let inner = base.expressionChildren.first, strip(inner, throughCasts: false).type.isArray {
                return nil
            }
            return base
        default:
            return nil
        }
    }

    /// The lvalue a node's value comes from, when it is a member or element of another lvalue.
    func extendedLvalue(_ node: Node) -> Node? {
        guard dereferencedPointer(node) == nil, let base = node.expressionChildren.first else { return nil }
        switch node.kind {
        case CXCursor_MemberRefExpr:
            return strip(base, throughCasts: false)
        case CXCursor_ArraySubscriptExpr:
            return strip(base, throughCasts: false)
        default:
            return nil
        }
    }

    /// The dereference at the bottom of a chain such as `p->a.b[2]`.
    func chainRoot(_ node: Node) -> Node? {
        var current = node
        while true {
            if dereferencedPointer(current) != nil { return current }
            guard let base = extendedLvalue(current) else { return nil }
            current = base
        }
    }

    /// The whole lvalue a dereference is the root of: `p->a.b[2]` for `p->a`.
    func chainTop(_ root: Node) -> Node {
        var current = root
        while var parent = current.parent {
            while parent.kind == CXCursor_ParenExpr, let up = parent.parent { parent = up }
            if parent.kind == CXCursor_UnexposedExpr, current.type.isArray, let up = parent.parent, up.kind == CXCursor_ArraySubscriptExpr,
               up.expressionChildren.first === parent {
                current = up
                continue
            }
            if parent.kind == CXCursor_MemberRefExpr, dereferencedPointer(parent) == nil,
               let base = parent.expressionChildren.first, strip(base, throughCasts: false) === current {
                current = parent
                continue
            }
            return current
        }
        return current
    }

    /// Whether a node's value is (or is computed from) a kernel pointer that the program may not
    /// dereference directly.
    func isExternal(_ node: Node) -> Bool {
        switch node.kind {
        case CXCursor_ParenExpr, CXCursor_UnexposedExpr, CXCursor_CStyleCastExpr:
            return node.expressionChildren.last.map(isExternal) ?? false
        case CXCursor_DeclRefExpr:
            return external.contains(declarationKey(node.referenced))
        case CXCursor_CallExpr:
            let name = node.cursor.spelling
            return name == "bpf_get_current_task" || name == "bpf_get_current_task_btf"
        case CXCursor_MemberRefExpr, CXCursor_ArraySubscriptExpr:
            return isExternalLoad(node)
        case CXCursor_UnaryOperator:
            switch unaryOperator(node) {
            case "*": return isExternalLoad(node)
            case "&":
                guard let operand = node.expressionChildren.first, let root = chainRoot(strip(operand, throughCasts: false)),
                      let pointer = dereferencedPointer(root) else { return false }
                return isExternal(pointer)
            default: return false
            }
        case CXCursor_BinaryOperator:
            let operands = node.expressionChildren
            switch binaryOperator(node) {
            case "+", "-": return operands.contains { $0.type.isPointer && isExternal($0) }
            case "=", ",": return operands.last.map(isExternal) ?? false
            default: return false
            }
        case CXCursor_ConditionalOperator:
            return node.expressionChildren.dropFirst().contains(where: isExternal)
        default:
            return false
        }
    }

    func isExternalLoad(_ node: Node) -> Bool {
        guard let root = chainRoot(node), let pointer = dereferencedPointer(root) else { return node.type.isPointer }
        if isContext(pointer) { return !node.type.isArray }
        return isExternal(pointer) || node.type.isPointer
    }

    mutating func markExternalSources() {
        for function in functions where section(of: function)?.hasPrefix("kprobe") == true || section(of: function)?.hasPrefix("kretprobe") == true {
            for parameter in parameters(function).dropFirst() { external.insert(declarationKey(parameter.cursor)) }
        }
    }

    /// Spreads "holds a kernel pointer" through initialisations, assignments and calls of the
    /// program's own functions, until nothing changes.
    mutating func propagateExternal() {
        var definitions: [String: Node] = [:]
        for function in functions { definitions[function.cursor.spelling] = function }
        var changed = true
        var rounds = 0
        while changed && rounds < 50 {
            changed = false
            rounds += 1
            var additions: [String] = []
            for function in functions {
                walkTree(function) { node in
                    switch node.kind {
                    case CXCursor_VarDecl:
                        if let initializer = node.expressionChildren.last, isExternal(initializer) {
                            additions.append(declarationKey(node.cursor))
                        }
                    case CXCursor_BinaryOperator:
                        let operands = node.expressionChildren
                        if operands.count == 2, binaryOperator(node) == "=" {
                            let target = strip(operands[0], throughCasts: false)
                            if target.kind == CXCursor_DeclRefExpr, isExternal(operands[1]) {
                                additions.append(declarationKey(target.referenced))
                            }
                        }
                    case CXCursor_CallExpr:
                        guard let callee = definitions[node.cursor.spelling] else { break }
                        let calleeParameters = parameters(callee)
                        for (index, argument) in node.expressionChildren.dropFirst().enumerated() where index < calleeParameters.count {
                            if isExternal(argument) { additions.append(declarationKey(calleeParameters[index].cursor)) }
                        }
                    default:
                        break
                    }
                }
            }
            for key in additions where external.insert(key).inserted { changed = true }
        }
    }

    // MARK: Rewriting expressions

    mutating func rewriteNode(_ node: Node) {
        if node.kind == CXCursor_CallExpr {
            rewriteTableCall(node)
            return
        }
        guard let pointer = dereferencedPointer(node), !isContext(pointer), isExternal(pointer) else { return }
        let top = chainTop(node)
        guard needsRead(top), let range = top.range else { return }
        guard editable(top) else {
            problems.append("\(path):\(line(of: range.lowerBound)): the kernel memory read `\(text(range))` is inside a macro, where kprobe-run cannot rewrite it; read it with bpf_probe_read_kernel() instead")
            return
        }
        if top.kind == CXCursor_MemberRefExpr, clang_Cursor_isBitField(top.cursor.referenced) != 0 {
            problems.append("\(path):\(line(of: range.lowerBound)): `\(text(range))` reads a kernel bit-field, which kprobe-run cannot read implicitly; copy the containing struct with bpf_probe_read_kernel() first")
            return
        }
        guard !edits.contains(range) else { return }
        counter += 1
        let value = "__bcc_v\(counter)"
        edits.replace(range, with: [
            .text("({ __typeof__("), .original(range), .text(") \(value); bpf_probe_read_kernel((void *)&\(value), sizeof(\(value)), (const void *)&("),
            .source(range), .text(")); \(value); })"),
        ])
    }

    /// Whether the program loads the value of this lvalue (rather than taking its address,
    /// assigning to it, or letting an array decay).
    func needsRead(_ top: Node) -> Bool {
        if top.type.isArray { return false }
        var child = top
        var parent = top.parent
        while let up = parent, up.kind == CXCursor_ParenExpr {
            child = up
            parent = up.parent
        }
        guard let parent else { return true }
        switch parent.kind {
        case CXCursor_UnaryOperator:
            let op = unaryOperator(parent)
            return !(op == "&" || op == "++" || op == "--" || op == "post++" || op == "post--")
        case CXCursor_UnaryExpr:
            return false
        case CXCursor_CompoundAssignOperator:
            return parent.expressionChildren.first !== child
        case CXCursor_BinaryOperator:
            return !(parent.expressionChildren.first === child && binaryOperator(parent) == "=")
        default:
            return true
        }
    }

    mutating func rewriteTableCall(_ call: Node) {
        let parts = call.expressionChildren
        guard let calleeNode = parts.first else { return }
        let callee = strip(calleeNode, throughCasts: false)
        guard callee.kind == CXCursor_MemberRefExpr, let base = callee.expressionChildren.first else { return }
        let baseReference = strip(base, throughCasts: false)
        guard baseReference.kind == CXCursor_DeclRefExpr, let name = tableUSRs[baseReference.referenced.usr],
              let table = tables[name], let range = call.range else { return }
        let method = callee.cursor.spelling
        guard editable(call) else {
            problems.append("\(path):\(line(of: range.lowerBound)): \(name).\(method)(…) is inside a macro, where kprobe-run cannot rewrite it; call it outside the macro")
            return
        }
        let arguments = Array(parts.dropFirst())
        let argumentRanges = arguments.compactMap(\.range)
        guard argumentRanges.count == arguments.count else { return }
        let map = "&\(table.name)"
        counter += 1
        let n = counter
        func argument(_ index: Int) -> TextEdits.Piece { .source(argumentRanges[index]) }
        var pieces: [TextEdits.Piece]
        switch (method, arguments.count) {
        case ("lookup", 1):
            pieces = [.text("((__typeof__(\(table.name).value))bpf_map_lookup_elem(\(map), "), argument(0), .text("))")]
        case ("update", 2), ("insert", 2):
            let flag = method == "update" ? "BPF_ANY" : "BPF_NOEXIST"
            pieces = [.text("bpf_map_update_elem(\(map), "), argument(0), .text(", "), argument(1), .text(", \(flag))")]
        case ("delete", 1):
            pieces = [.text("bpf_map_delete_elem(\(map), "), argument(0), .text(")")]
        case ("lookup_or_try_init", 2), ("lookup_or_init", 2):
            pieces = [
                .text("({ void *__bcc_k\(n) = (void *)("), argument(0), .text("); __typeof__(\(table.name).value) __bcc_l\(n) = bpf_map_lookup_elem(\(map), __bcc_k\(n)); "),
                .text("if (!__bcc_l\(n)) { bpf_map_update_elem(\(map), __bcc_k\(n), "), argument(1),
                .text(", BPF_NOEXIST); __bcc_l\(n) = bpf_map_lookup_elem(\(map), __bcc_k\(n)); } __bcc_l\(n); })"),
            ]
        case ("increment", 1), ("increment", 2), ("atomic_increment", 1), ("atomic_increment", 2):
            let amount: [TextEdits.Piece] = arguments.count == 2 ? [.text("("), argument(1), .text(")")] : [.text("1")]
            let add: [TextEdits.Piece] = method == "atomic_increment"
                ? [.text("__sync_fetch_and_add(__bcc_l\(n), __bcc_a\(n));")]
                : [.text("*__bcc_l\(n) += __bcc_a\(n);")]
            let head: [TextEdits.Piece] = [
                .text("({ __typeof__(*\(table.name).key) __bcc_k\(n) = ("), argument(0),
                .text("); __typeof__(*\(table.name).value) __bcc_a\(n) = "),
            ]
            let lookup = "; __typeof__(\(table.name).value) __bcc_l\(n) = bpf_map_lookup_elem(\(map), &__bcc_k\(n)); if (__bcc_l\(n)) { "
            let insert = " } else { bpf_map_update_elem(\(map), &__bcc_k\(n), &__bcc_a\(n), BPF_NOEXIST); } })"
            pieces = head
            pieces += amount
            pieces.append(.text(lookup))
            pieces += add
            pieces.append(.text(insert))
        case ("perf_submit", 3):
            pieces = [.text("bpf_perf_event_output("), argument(0), .text(", \(map), BPF_F_CURRENT_CPU, "), argument(1), .text(", "), argument(2), .text(")")]
            recordEvent(table: name, pointer: arguments[1])
        case ("perf_submit_skb", 4):
            pieces = [.text("bpf_perf_event_output("), argument(0), .text(", \(map), ((__u64)("), argument(1), .text(") << 32) | BPF_F_CURRENT_CPU, "),
                      argument(2), .text(", "), argument(3), .text(")")]
            recordEvent(table: name, pointer: arguments[2])
        case ("ringbuf_output", 3):
            pieces = [.text("bpf_ringbuf_output(\(map), "), argument(0), .text(", "), argument(1), .text(", "), argument(2), .text(")")]
            recordEvent(table: name, pointer: arguments[0])
        case ("ringbuf_reserve", 1):
            pieces = [.text("bpf_ringbuf_reserve(\(map), "), argument(0), .text(", 0)")]
            recordReservation(table: name, call: call)
        case ("ringbuf_submit", 2), ("ringbuf_discard", 2):
            let helper = method == "ringbuf_submit" ? "bpf_ringbuf_submit" : "bpf_ringbuf_discard"
            pieces = [.text("\(helper)("), argument(0), .text(", "), argument(1), .text(")")]
        case ("get_stackid", 2):
            pieces = [.text("bpf_get_stackid("), argument(0), .text(", \(map), "), argument(1), .text(")")]
        case ("call", 2):
            pieces = [.text("bpf_tail_call("), argument(0), .text(", \(map), "), argument(1), .text(")")]
        case ("push", 2):
            pieces = [.text("bpf_map_push_elem(\(map), "), argument(0), .text(", "), argument(1), .text(")")]
        case ("pop", 1), ("peek", 1):
            pieces = [.text("bpf_map_\(method)_elem(\(map), "), argument(0), .text(")")]
        default:
            problems.append("\(path):\(line(of: range.lowerBound)): \(name).\(method)() with \(arguments.count) argument(s) is not a BCC table method kprobe-run supports")
            return
        }
        let kept = argumentRanges.reduce(0) { $0 + newlines(in: $1) }
        let lost = newlines(in: range) - kept
        if lost > 0 { pieces.append(.text(String(repeating: "\n", count: lost))) }
        edits.replace(range, with: pieces)
    }

    mutating func recordEvent(table: String, pointer: Node) {
        var node = pointer
        while node.isTransparent || node.kind == CXCursor_CStyleCastExpr, node.type.pointee.canonical.kind == CXType_Void || node.isTransparent,
              let inner = node.expressionChildren.last {
            node = inner
        }
        let type = node.type
        guard type.isPointer || type.isArray else { return }
        let element = type.isArray ? clang_getArrayElementType(type) : type.pointee
        guard element.canonical.kind != CXType_Void else { return }
        record(table: table, type: element)
    }

    mutating func recordReservation(table: String, call: Node) {
        var node = call
        while let parent = node.parent {
            switch parent.kind {
            case CXCursor_ParenExpr, CXCursor_UnexposedExpr:
                node = parent
                continue
            case CXCursor_CStyleCastExpr, CXCursor_VarDecl:
                if parent.type.isPointer { record(table: table, type: parent.type.pointee) }
            case CXCursor_BinaryOperator:
                if let target = parent.expressionChildren.first, target !== node, target.type.isPointer {
                    record(table: table, type: target.type.pointee)
                }
            default:
                break
            }
            return
        }
    }

    mutating func record(table: String, type: CXType) {
        guard metadata.events[table] == nil, type.canonical.kind != CXType_Void else { return }
        var spelling = type.spelling
        while spelling.hasPrefix("const ") || spelling.hasPrefix("volatile ") {
            spelling = String(spelling.drop { $0 != " " }.dropFirst())
        }
        metadata.events[table] = spelling
    }

    /// A histogram is log2 when the functions that touch it call bpf_log2l or bpf_log2.
    mutating func classifyHistograms() {
        for table in tables.values where table.kind == "histogram" {
            var log2 = false
            for function in functions {
                var touches = false
                var callsLog2 = false
                walkTree(function) { node in
                    if node.kind == CXCursor_DeclRefExpr, node.cursor.spelling == table.name, tableUSRs[node.referenced.usr] == table.name { touches = true }
                    if node.kind == CXCursor_CallExpr, node.cursor.spelling == "bpf_log2l" || node.cursor.spelling == "bpf_log2" { callsLog2 = true }
                }
                if touches && callsLog2 { log2 = true }
            }
            metadata.histograms[table.name] = log2 ? "log2" : "linear"
        }
    }
}

func walkTree(_ node: Node, _ body: (Node) -> Void) {
    body(node)
    for child in node.children { walkTree(child, body) }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let found = rest.firstRange(of: target) {
            result += rest[..<found.lowerBound]
            result += replacement
            rest = rest[found.upperBound...]
        }
        result += rest
        return result
    }
}
