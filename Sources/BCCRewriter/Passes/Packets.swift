import CClang
import KprobeSupport

/// Packets: BCC's packet dialect. A pointer to a <bcc/proto.h> header (`struct ip_t *ip =
/// cursor_advance(cursor, sizeof(*ip))`) holds an offset into the packet, not an address: reading
/// `ip->ttl` becomes `bpf_dext_pkt(ctx, (u64)ip + 8, 0, 8)` and assigning it `bpf_dins_pkt(…)`,
/// with the header's fields in network bit order as BCC numbers them.
extension Rewriter {
    /// The annotation proto.h's BPF_PACKET_HEADER gives every header struct.
    static let packetMarker = "kprobe_run_bcc_packet"

    /// `p->field` where p points to a packet header, with the field's place in bits.
    func packetField(_ node: Node) -> (base: Node, offset: Int, bits: Int)? {
        guard node.kind == CXCursor_MemberRefExpr, let base = node.expressionChildren.first, base.type.isPointer else { return nil }
        let record = clang_getTypeDeclaration(base.type.pointee.canonical)
        guard children(of: record).contains(where: { $0.kind == CXCursor_AnnotateAttr && $0.spelling == Self.packetMarker }) else { return nil }
        let field = node.referenced
        let offset = Int(clang_Cursor_getOffsetOfField(field))
        let bits = clang_Cursor_isBitField(field) != 0 ? Int(clang_getFieldDeclBitWidth(field)) : Int(clang_Type_getSizeOf(field.type)) * 8
        guard offset >= 0, bits > 0 else { return nil }
        return (base, offset, bits)
    }

    /// Whether a function reads or writes packet headers (it is then a tc classifier, whose
    /// context is the packet, unless its context's type says otherwise).
    func accessesPackets(_ function: Node) -> Bool {
        var found = false
        walkTree(function) { node in if !found, packetField(node) != nil { found = true } }
        return found
    }

    mutating func rewritePackets(in function: Node) {
        let context = parameters(function).first?.cursor.spelling ?? ""
        walkTree(function) { node in
            guard let (base, offset, bits) = packetField(node), let range = node.range, let baseRange = base.range else { return }
            guard !context.isEmpty else {
                problems.append("\(path):\(line(of: range.lowerBound)): `\(text(range))` reads a packet header in \(function.cursor.spelling), which has no context argument to read the packet from; declare it as int \(function.cursor.spelling)(struct __sk_buff *skb)")
                return
            }
            guard editable(node) else {
                problems.append("\(path):\(line(of: range.lowerBound)): the packet header access `\(text(range))` is inside a macro, where kprobe-run cannot rewrite it; write it outside the macro")
                return
            }
            let place: [TextEdits.Piece] = [.text("\(context), (u64)("), .source(baseRange), .text(") + \(offset / 8), \(offset % 8), \(bits)")]
            if let assignment = node.parent, assignment.kind == CXCursor_BinaryOperator, binaryOperator(assignment) == "=",
               assignment.expressionChildren.first === node, let value = assignment.expressionChildren.last?.range,
               let whole = assignment.range {
                edits.replace(whole, with: [.text("bpf_dins_pkt(")] + place + [.text(", "), .source(value), .text(")")])
            } else if needsRead(node) {
                edits.replace(range, with: [.text("bpf_dext_pkt(")] + place + [.text(")")])
            } else {
                problems.append("\(path):\(line(of: range.lowerBound)): `\(text(range))` is a packet header field, which can only be read or assigned with =")
            }
        }
    }
}
