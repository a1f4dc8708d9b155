import CClang
import KprobeSupport

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

/// Positions in the user's source, and questions about the AST every pass asks.
extension Rewriter {
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
        if let first = tokens.first, ["*", "&", "-", "+", "!", "~", "++", "--"].contains(first.spelling) {
            if let operand = node.expressionChildren.first?.range, let start = node.range?.lowerBound, operand.lowerBound > start {
                return first.spelling
            }
        }
        if let last = tokens.last, last.spelling == "++" || last.spelling == "--" { return "post" + last.spelling }
        // Inside a macro the extent's tokens are the macro's use, not the operator: the types
        // still tell an address-of and a dereference apart.
        if let operand = node.expressionChildren.first {
            if node.type.isPointer, clang_equalTypes(node.type.pointee.canonical, operand.type.canonical) != 0 { return "&" }
            if operand.type.isPointer, clang_equalTypes(operand.type.pointee.canonical, node.type.canonical) != 0 { return "*" }
        }
        return "?"
    }

    /// A node's range in the main file when it starts inside a macro's use and ends after it, as
    /// `TCP_SKB_CB(skb)->seq` does: from the macro's use to the node's end.
    func expansionRange(of node: Node) -> Range<Int>? {
        let extent = clang_getCursorExtent(node.cursor)
        var file: CXFile?
        var start: UInt32 = 0
        clang_getExpansionLocation(clang_getRangeStart(extent), &file, nil, nil, &start)
        guard let file, file == unit.mainFile, let end = fileOffset(clang_getRangeEnd(extent), in: unit.mainFile),
              Int(start) < end, end <= source.count,
              macroRanges.contains(where: { $0.lowerBound == Int(start) && $0.upperBound <= end }) else { return nil }
        return Int(start)..<end
    }

    func binaryOperator(_ node: Node) -> String? {
        guard node.kind == CXCursor_BinaryOperator, let lhs = node.expressionChildren.first?.range else { return nil }
        return unit.tokens(in: clang_getCursorExtent(node.cursor)).first { $0.offset >= lhs.upperBound }?.spelling
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
