import CClang
import KprobeSupport

/// Kernel reads: which values hold kernel pointers, and every load through one made a
/// bpf_probe_read_kernel().
extension Rewriter {
    func isContext(_ node: Node) -> Bool {
        let stripped = strip(node, throughCasts: true)
        guard stripped.kind == CXCursor_DeclRefExpr else { return false }
        return contextKind(stripped.referenced.type) != nil
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
            return name == "bpf_get_current_task" || name == "bpf_get_current_task_btf" || external.contains(returnKey(name))
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
        for function in functions {
            guard let section = sections[function.cursor.spelling], section.hasPrefix("kprobe") || section.hasPrefix("kretprobe") else { continue }
            for parameter in parameters(function).dropFirst() { external.insert(declarationKey(parameter.cursor)) }
        }
    }

    /// The key in `external` that says a function of the program returns a kernel pointer.
    func returnKey(_ function: String) -> String { "return:" + function }

    /// Spreads "holds a kernel pointer" through initialisations, assignments, calls of the
    /// program's own functions and what they return, until nothing changes.
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
                let returnsPointer = clang_getResultType(function.type).isPointer
                walkTree(function) { node in
                    switch node.kind {
                    case CXCursor_ReturnStmt:
                        if returnsPointer, let value = node.expressionChildren.first, isExternal(value) {
                            additions.append(returnKey(function.cursor.spelling))
                        }
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

    /// Makes the load `node` performs through a kernel pointer, if it does one, an explicit read.
    mutating func rewriteKernelRead(_ node: Node) {
        guard let pointer = dereferencedPointer(node), !isContext(pointer), isExternal(pointer) else { return }
        let top = chainTop(node)
        guard needsRead(top) else { return }
        let wholeMacroUse = top.range == nil ? expansionRange(of: top) : nil
        guard let range = top.range ?? wholeMacroUse else { return }
        guard wholeMacroUse != nil || editable(top) else {
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
}
