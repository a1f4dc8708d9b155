/// Function symbols sorted by address, for address → `name+offset` lookups (binary search).
struct SymbolTable: Sendable {
    struct Symbol: Sendable, Equatable {
        var address: UInt64
        /// 0 when unknown (kallsyms has no sizes): the symbol then reaches to the next one.
        var size: UInt64
        var name: String
    }

    private(set) var symbols: [Symbol]

    init(_ symbols: [Symbol]) {
        self.symbols = symbols.sorted { $0.address < $1.address }
    }

    var isEmpty: Bool { symbols.isEmpty }

    /// The symbol covering `address`: the last one starting at or before it, unless that one has
    /// a size and ends before the address.
    func lookup(_ address: UInt64) -> (name: String, offset: UInt64)? {
        var low = 0, high = symbols.count
        while low < high {
            let middle = (low + high) / 2
            if symbols[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        // Several symbols may share an address (aliases); prefer one whose size covers it.
        var index = low - 1
        let start = symbols[index].address
        var candidate = index
        while index >= 0, symbols[index].address == start {
            if symbols[index].size > 0, address - start < symbols[index].size { candidate = index; break }
            index -= 1
        }
        let symbol = symbols[candidate]
        if symbol.size > 0, address - symbol.address >= symbol.size { return nil }
        return (symbol.name, address - symbol.address)
    }
}

/// One resolved stack frame.
struct Frame: Equatable, Sendable {
    var address: UInt64
    var symbol: String?
    var offset: UInt64
    /// The file (user frames) or module (kernel frames) the address lies in, when known.
    var module: String?
    var isKernel: Bool

    /// Kernel addresses have the top bit set on every 64-bit architecture BPF runs on.
    static func isKernelAddress(_ address: UInt64) -> Bool { address >> 63 == 1 }

    /// `symbol+0xOFF`, or the address with the file it is in when there is no symbol.
    var text: String {
        if let symbol { return offset == 0 ? symbol : "\(symbol)+0x\(String(offset, radix: 16))" }
        let hex = "0x" + String(address, radix: 16)
        return module.map { "\(hex) (\($0))" } ?? hex
    }

    /// The function name alone, as folded stacks want it; `[unknown]` when there is none.
    var foldedName: String {
        guard let symbol else { return "[unknown]" }
        return String(symbol.map { $0 == " " || $0 == ";" ? "_" : $0 })
    }
}
