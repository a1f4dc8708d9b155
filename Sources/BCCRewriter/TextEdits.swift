/// Replacements of byte ranges of the user's source, which may nest: a replacement's text can
/// embed other ranges of the source, and the edits inside those ranges are applied there.
struct TextEdits {
    enum Piece {
        case text(String)
        /// A range of the source, with the edits that lie inside it applied.
        case source(Range<Int>)
        /// A range of the source as written, on one line (for typeof(), which must not add lines).
        case original(Range<Int>)
    }

    struct Edit {
        var range: Range<Int>
        var pieces: [Piece]
        var order: Int
    }

    let source: [UInt8]
    private(set) var edits: [Edit] = []

    init(source: [UInt8]) { self.source = source }

    mutating func replace(_ range: Range<Int>, with pieces: [Piece]) {
        edits.append(Edit(range: range, pieces: pieces, order: edits.count))
    }

    mutating func insert(_ text: String, at offset: Int) {
        replace(offset..<offset, with: [.text(text)])
    }

    func contains(_ range: Range<Int>) -> Bool { edits.contains { $0.range == range && !range.isEmpty } }

    func render() -> String {
        let sorted = edits.sorted {
            if $0.range.lowerBound != $1.range.lowerBound { return $0.range.lowerBound < $1.range.lowerBound }
            if $0.range.upperBound != $1.range.upperBound { return $0.range.upperBound > $1.range.upperBound }
            return $0.order < $1.order
        }
        var out: [UInt8] = []
        out.reserveCapacity(source.count + source.count / 4)
        render(0..<source.count, sorted[...], into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `range` with the outermost edits inside it applied; an edit that straddles the
    /// boundary of another is dropped rather than applied twice.
    private func render(_ range: Range<Int>, _ candidates: ArraySlice<Edit>, into out: inout [UInt8]) {
        var position = range.lowerBound
        var index = candidates.startIndex
        while index < candidates.endIndex {
            let edit = candidates[index]
            index += 1
            guard edit.range.lowerBound >= position, edit.range.upperBound <= range.upperBound else { continue }
            out.append(contentsOf: source[position..<edit.range.lowerBound])
            var inner = index
            if !edit.range.isEmpty {
                while inner < candidates.endIndex && candidates[inner].range.lowerBound < edit.range.upperBound { inner += 1 }
            }
            let nested = candidates[index..<inner]
            for piece in edit.pieces {
                switch piece {
                case .text(let text): out.append(contentsOf: Array(text.utf8))
                case .source(let sub): render(sub, nested, into: &out)
                case .original(let sub):
                    out.append(contentsOf: source[sub].map { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") ? UInt8(ascii: " ") : $0 })
                }
            }
            position = edit.range.upperBound
            index = inner
        }
        out.append(contentsOf: source[position..<range.upperBound])
    }
}
