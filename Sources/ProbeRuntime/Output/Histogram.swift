/// A map of bucket counts printed the way BCC's `print_log2_hist` / `print_linear_hist` do:
/// `value range : count |stars|`, 40 stars for the largest bucket.
///
/// Buckets are indexed as BCC's `bpf_log2l` numbers them: for log2, bucket 0 counts the value 0
/// and bucket k ≥ 1 counts [2^(k-1), 2^k - 1]; BCC prints rows 1…last non-empty, labelling row 1
/// "0 -> 1", and never prints bucket 0. libbpf-tools' `struct hist { __u32 slots[N]; }` puts
/// values 0 and 1 in slot 0 and [2^k, 2^(k+1) - 1] in slot k, i.e. slot k is BCC's bucket
/// k + 1 (`init(slots:)` shifts them), which makes both print alike. Linear buckets are values.
///
/// libbpf-style histograms (`init(slots:)`) print as libbpf-tools' trace_helpers do: its log2
/// header has one space less before `distribution`, and its `print_linear_hist` shows only the
/// non-empty rows (BCC's shows every row from 0).
struct Histogram: Equatable, Sendable {
    enum Kind: String, Sendable {
        case log2, linear
    }

    struct Row: Equatable, Sendable {
        var low: UInt64
        var high: UInt64
        var count: UInt64
    }

    var name: String
    var kind: Kind
    /// The rest of the map key when the map holds one histogram per key (nil for a plain one).
    var key: Value?
    /// The value's other fields beside its buckets (runqlat's `comm`), a struct; nil for none.
    var labels: Value?
    var buckets: [UInt64]
    /// Drawn as libbpf-tools' trace_helpers draw it rather than as BCC's Python does.
    var libbpfTools = false
    /// What the values are ("usecs"), the header's label; nil: "value".
    var unit: String?
    /// Linear: how much each bucket stands for (bucket k is the value k × step).
    var step: UInt64 = 1

    init(name: String, kind: Kind, key: Value? = nil, labels: Value? = nil, buckets: [UInt64]) {
        self.name = name
        self.kind = kind
        self.key = key
        self.labels = labels
        self.buckets = buckets
    }

    /// How a libbpf-style histogram's slots read (ProbeMetadata's `slots`, `slotUnits`, `slotSteps`).
    struct SlotStyle: Equatable {
        var kind: Kind = .log2
        var unit: String?
        var step: UInt64 = 1
    }

    /// libbpf-tools slots: log2 (slot k = [2^k, 2^(k+1) - 1], slot 0 also holding 0) or linear
    /// (slot k = the value k × step).
    init(name: String, style: SlotStyle = SlotStyle(), key: Value?, labels: Value? = nil, slots: [UInt64]) {
        self.init(name: name, kind: style.kind, key: key, labels: labels, buckets: style.kind == .log2 ? [0] + slots : slots)
        libbpfTools = true
        unit = style.unit
        step = style.step
    }

    static let starsMax = 40

    /// The printed rows, as BCC prints them (empty when every printed bucket is zero).
    var rows: [Row] {
        guard let last = buckets.lastIndex(where: { $0 > 0 }) else { return [] }
        switch kind {
        case .linear:
            return (0...last).filter { !libbpfTools || buckets[$0] > 0 }
                .map { Row(low: UInt64($0) &* step, high: UInt64($0) &* step, count: buckets[$0]) }
        case .log2:
            guard last >= 1 else { return [] }
            return (1...last).map { index in
                let high = index >= 64 ? UInt64.max : (UInt64(1) << UInt64(index)) - 1
                var low = index >= 65 ? UInt64.max : (UInt64(1) << UInt64(index - 1))
                if low == high { low -= 1 }
                return Row(low: low, high: high, count: buckets[index])
            }
        }
    }

    /// `name [key] label=value …:`.
    var title: String {
        var title = name
        if let key { title += " [\(key.line)]" }
        if let labels { title += " " + labels.line }
        return title + ":"
    }

    var text: [String] {
        let rows = rows
        guard !rows.isEmpty else { return ["\(title) (empty)"] }
        let largest = rows.map(\.count).max() ?? 0
        var lines = [title]
        switch kind {
        case .linear:
            lines.append("     " + Self.left(unit ?? "value", 13) + " : count     distribution")
            for row in rows {
                lines.append("        " + Self.left(String(row.low), 10) + " : " + Self.left(String(row.count), 8)
                             + " |" + Self.left(Self.stars(row.count, largest, Self.starsMax), Self.starsMax) + "|")
            }
        case .log2:
            // BCC widens the columns (and halves the bar) once buckets pass 2^32.
            let wide = buckets.lastIndex(where: { $0 > 0 })! > 32
            let width = wide ? 20 : 10, stars = wide ? Self.starsMax / 2 : Self.starsMax
            lines.append(String(repeating: " ", count: wide ? 15 : 5) + Self.left(unit ?? "value", wide ? 29 : 19)
                         + (libbpfTools ? " : count    distribution" : " : count     distribution"))
            for row in rows {
                lines.append(Self.right(String(row.low), width) + " -> " + Self.left(String(row.high), width) + " : "
                             + Self.left(String(row.count), 8) + " |" + Self.left(Self.stars(row.count, largest, stars), stars) + "|")
            }
        }
        return lines
    }

    /// floor(width × value / largest) stars, at most `width`.
    static func stars(_ value: UInt64, _ largest: UInt64, _ width: Int) -> String {
        guard largest > 0 else { return "" }
        let count = min(Int128(width), Int128(width) * Int128(value) / Int128(largest))
        return String(repeating: "*", count: Int(count))
    }

    static func left(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func right(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
