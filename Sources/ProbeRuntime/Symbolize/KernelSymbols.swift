import KprobeSupport

/// Kernel text symbols from /proc/kallsyms, read the first time a kernel frame needs a name.
///
/// Lines are `ADDRESS TYPE NAME [MODULE]`; only text symbols (t, T, w, W) are kept. When
/// kptr_restrict hides addresses every one reads 0, and the table stays empty (frames then
/// print as addresses).
struct KernelSymbols: Sendable {
    let table: SymbolTable
    private let modules: [String: String]

    init(kallsyms text: [UInt8]) {
        var symbols: [SymbolTable.Symbol] = []
        var modules: [String: String] = [:]
        symbols.reserveCapacity(text.count / 40)
        var lineStart = 0
        while lineStart < text.count {
            var lineEnd = lineStart
            while lineEnd < text.count, text[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if let (address, type, name, module) = KernelSymbols.parse(text[lineStart..<lineEnd]), address != 0,
               [UInt8(ascii: "t"), UInt8(ascii: "T"), UInt8(ascii: "w"), UInt8(ascii: "W")].contains(type) {
                symbols.append(SymbolTable.Symbol(address: address, size: 0, name: name))
                if let module { modules[name] = module }
            }
            lineStart = lineEnd + 1
        }
        table = SymbolTable(symbols)
        self.modules = modules
    }

    static func load(path: String = "/proc/kallsyms") -> KernelSymbols {
        KernelSymbols(kallsyms: (try? FileSystem.read(path)) ?? [])
    }

    func frame(_ address: UInt64) -> Frame {
        guard let (name, offset) = table.lookup(address) else {
            return Frame(address: address, symbol: nil, offset: 0, module: nil, isKernel: true)
        }
        return Frame(address: address, symbol: name, offset: offset, module: modules[name], isKernel: true)
    }

    private static func parse(_ line: ArraySlice<UInt8>) -> (UInt64, UInt8, String, String?)? {
        let fields = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        guard fields.count >= 3, fields[1].count == 1 else { return nil }
        var address: UInt64 = 0
        for digit in fields[0] {
            let value: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = digit - UInt8(ascii: "A") + 10
            default: return nil
            }
            address = address << 4 | UInt64(value)
        }
        let name = String(decoding: fields[2], as: UTF8.self)
        var module: String?
        if fields.count >= 4, fields[3].first == UInt8(ascii: "["), fields[3].last == UInt8(ascii: "]") {
            module = String(decoding: fields[3].dropFirst().dropLast(), as: UTF8.self)
        }
        return (address, fields[1].first!, name, module)
    }
}
