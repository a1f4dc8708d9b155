import CClang
import KprobeSupport

/// Programs and naming: which functions are programs, their SEC() names, and the arguments
/// after ctx read from registers.
extension Rewriter {
    enum ContextKind { case ptRegs, other }

    func contextKind(_ type: CXType) -> ContextKind? {
        guard type.isPointer else { return nil }
        var pointee = type.pointee.canonical.spelling
        if pointee.hasPrefix("const ") { pointee.removeFirst(6) }
        if pointee == "struct pt_regs" { return .ptRegs }
        for prefix in ["struct " + BCCName.tracepointPrefix, "struct bpf_raw_tracepoint_args", "struct bpf_perf_event_data",
                       "struct __sk_buff", "struct xdp_md"] where pointee.hasPrefix(prefix) {
            return .other
        }
        return nil
    }

    func parameters(_ function: Node) -> [Node] { function.children.filter { $0.kind == CXCursor_ParmDecl } }

    /// The section of a function that is a program, or nil for a helper function. As in BCC,
    /// every non-static function is a program: the tool's Python attaches the ones whose name
    /// says nothing, with the type it chooses. The context's type gives the program type here;
    /// any other context (`void *`, none, a struct of the program's own) makes a kprobe, BCC's
    /// default type and the one tools attach such functions with.
    func section(of function: Node) -> String? {
        let name = function.cursor.spelling
        if clang_Cursor_getStorageClass(function.cursor) == CX_SC_Static { return nil }
        switch BCCName(function: name) {
        case .kprobe(let symbol): return "kprobe/" + attachTarget(symbol)
        case .kretprobe(let symbol): return "kretprobe/" + attachTarget(symbol)
        case .tracepoint(let category, let event): return "tracepoint/\(category)/\(event)"
        case .rawTracepoint(let event): return "raw_tracepoint/" + event
        case .kfunc(let function): return "fentry/" + function
        case .kretfunc(let function): return "fexit/" + function
        case .lsm(let hook): return "lsm/" + hook
        case .kmodRet(let function): return "fmod_ret/" + function
        case nil: break
        }
        // Packet header accesses need the packet as context, and stores need tc's helpers.
        let packets = accessesPackets(function)
        guard let first = parameters(function).first, first.type.isPointer else { return packets ? "tc" : "kprobe" }
        var pointee = first.type.pointee.canonical.spelling
        if pointee.hasPrefix("const ") { pointee.removeFirst(6) }
        switch pointee {
        case "struct pt_regs": return "kprobe"
        case "struct bpf_perf_event_data": return "perf_event"
        case "struct __sk_buff": return packets ? "tc" : "socket"
        case "struct xdp_md": return "xdp"
        case "struct bpf_raw_tracepoint_args": return "raw_tp"
        case _ where pointee.hasPrefix("struct " + BCCName.tracepointPrefix): return "tracepoint"
        default: return packets ? "tc" : "kprobe"
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
        switch BCCName(function: name) {
        case .kprobe(let symbol), .kretprobe(let symbol): return attachTarget(symbol).hasPrefix(syscallPrefix)
        default: return false
        }
    }

    /// Whether the declaration already says always_inline or noinline, before its name.
    func declaresInlining(_ function: Node) -> Bool {
        guard let start = function.range?.lowerBound,
              let name = function.children.first(where: { $0.kind == CXCursor_ParmDecl || $0.kind == CXCursor_CompoundStmt })?.range?.lowerBound,
              start < name else { return false }
        let head = text(start..<name)
        return head.contains("always_inline") || head.contains("noinline")
    }

    /// Decides every function's section once (`sections`; helpers have none).
    mutating func assignSections() {
        for function in functions {
            if let section = section(of: function) { sections[function.cursor.spelling] = section }
        }
    }

    /// BCC's rule: a program (any non-static function) is not a function other code can call.
    mutating func rejectCallsOfPrograms(in function: Node) {
        walkTree(function) { node in
            guard node.kind == CXCursor_CallExpr, sections[node.cursor.spelling] != nil,
                  clang_getCursorKind(node.referenced) == CXCursor_FunctionDecl, let range = node.range else { return }
            problems.append("\(path):\(line(of: range.lowerBound)): \(function.cursor.spelling) calls \(node.cursor.spelling), which is not static and so is a program of its own; make \(node.cursor.spelling) static to call it")
        }
    }

    mutating func rewriteFunction(_ function: Node) {
        guard let start = function.range?.lowerBound else { return }
        let name = function.cursor.spelling
        // BCC inlines every function: a helper several programs call needs no BPF-to-BPF call,
        // and constants (a string literal handed to a static helper) fold as in BCC.
        if !declaresInlining(function) { edits.insert("__attribute__((always_inline)) ", at: start) }
        guard let section = sections[name] else { return }
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
}
