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
        Kallsyms.forEach(in: text[...]) { symbol in
            guard symbol.address != 0, symbol.isText else { return true }
            let name = String(decoding: symbol.name, as: UTF8.self)
            symbols.append(SymbolTable.Symbol(address: symbol.address, size: 0, name: name))
            if let module = symbol.module { modules[name] = String(decoding: module, as: UTF8.self) }
            return true
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
}
