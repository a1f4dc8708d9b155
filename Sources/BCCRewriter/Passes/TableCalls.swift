import CClang
import KprobeSupport

/// Table calls: `table.method(…)` becomes the BPF helper call, and what is submitted to
/// perf and ring buffers is recorded for the runtime to decode.
extension Rewriter {
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
        case ("lookup", 1) where table.isMapOfMaps:
            pieces = [.text("bpf_map_lookup_elem(\(map), "), argument(0), .text(")")]
        case ("lookup", 1):
            pieces = [.text("((__typeof__(\(table.name).value))bpf_map_lookup_elem(\(map), "), argument(0), .text("))")]
        case ("update", 2), ("insert", 2):
            let flag = method == "update" ? "BPF_ANY" : "BPF_NOEXIST"
            pieces = [.text("bpf_map_update_elem(\(map), "), argument(0), .text(", "), argument(1), .text(", \(flag))")]
        case ("delete", 1):
            pieces = [.text("bpf_map_delete_elem(\(map), "), argument(0), .text(")")]
        case ("lookup_or_try_init", 2), ("lookup_or_init", 2):
            // lookup_or_init returns from the program when the map is full, as BCC expands it
            // (callers dereference its result unchecked); lookup_or_try_init leaves that to them.
            let bail = method == "lookup_or_init" ? "if (!__bcc_l\(n)) return 0; " : ""
            pieces = [
                .text("({ void *__bcc_k\(n) = (void *)("), argument(0), .text("); __typeof__(\(table.name).value) __bcc_l\(n) = bpf_map_lookup_elem(\(map), __bcc_k\(n)); "),
                .text("if (!__bcc_l\(n)) { bpf_map_update_elem(\(map), __bcc_k\(n), "), argument(1),
                .text(", BPF_NOEXIST); __bcc_l\(n) = bpf_map_lookup_elem(\(map), __bcc_k\(n)); } \(bail)__bcc_l\(n); })"),
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
        case ("perf_read", 1):
            pieces = [.text("bpf_perf_event_read(\(map), "), argument(0), .text(")")]
        case ("perf_counter_value", 3):
            pieces = [.text("bpf_perf_event_read_value(\(map), "), argument(0), .text(", "), argument(1), .text(", "), argument(2), .text(")")]
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
}
