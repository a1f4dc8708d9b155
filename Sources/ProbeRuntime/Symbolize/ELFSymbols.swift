import CLibELF
import KprobeSupport
import Glibc

/// The function symbols of one ELF file (its .symtab, else its .dynsym) and its loadable
/// segments, for turning an offset in the mapped file into `name+offset`.
///
/// A process maps file offsets, not link-time addresses: for an address inside a mapping,
/// `address - mapping.start + mapping.offset` is the file offset, and the PT_LOAD segment holding
/// that offset gives the link-time address (`offset - p_offset + p_vaddr`). This covers PIE
/// executables and shared objects (whatever their load bias) as well as fixed-address ones.
struct ELFSymbols: Sendable {
    struct Segment: Sendable {
        var offset: UInt64
        var address: UInt64
        var size: UInt64
    }

    let segments: [Segment]
    let table: SymbolTable

    init(segments: [Segment], table: SymbolTable) {
        self.segments = segments
        self.table = table
    }

    /// nil when the file cannot be opened or is not ELF.
    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let image = ELFImage(descriptor: fd) else { return nil }
        let elf = image.handle

        var segments: [Segment] = []
        var count = 0
        if elf_getphdrnum(elf, &count) == 0 {
            for index in 0..<count {
                var header = GElf_Phdr()
                guard gelf_getphdr(elf, Int32(index), &header) != nil, header.p_type == UInt32(PT_LOAD) else { continue }
                segments.append(Segment(offset: header.p_offset, address: header.p_vaddr, size: header.p_filesz))
            }
        }

        var symtab: [SymbolTable.Symbol] = []
        var dynsym: [SymbolTable.Symbol] = []
        for section in image.sections
        where section.header.sh_type == UInt32(SHT_SYMTAB) || section.header.sh_type == UInt32(SHT_DYNSYM) {
            var symbols: [SymbolTable.Symbol] = []
            image.forEachSymbol(in: section) { symbol, name in
                let type = Int32(symbol.st_info & 0xf)
                if type == STT_FUNC || type == STT_GNU_IFUNC, symbol.st_value != 0, symbol.st_shndx != UInt16(SHN_UNDEF), name.pointee != 0 {
                    symbols.append(SymbolTable.Symbol(address: symbol.st_value, size: symbol.st_size, name: String(cString: name)))
                }
                return true
            }
            if section.header.sh_type == UInt32(SHT_SYMTAB) { symtab = symbols } else { dynsym = symbols }
        }
        self.init(segments: segments, table: SymbolTable(symtab.isEmpty ? dynsym : symtab))
    }

    /// The link-time address of a file offset, when a loadable segment holds it.
    func address(forFileOffset offset: UInt64) -> UInt64? {
        for segment in segments where offset >= segment.offset && offset - segment.offset < segment.size {
            return offset - segment.offset + segment.address
        }
        return nil
    }

    func lookup(fileOffset: UInt64) -> (name: String, offset: UInt64)? {
        address(forFileOffset: fileOffset).flatMap(table.lookup)
    }
}

/// One line of /proc/PID/maps that maps a file.
struct Mapping: Sendable, Equatable {
    var start: UInt64
    var end: UInt64
    var offset: UInt64
    var path: String

    /// File-backed mappings of a /proc/PID/maps text (anonymous ones and `[heap]` dropped;
    /// `[vdso]` kept by name).
    static func parse(maps text: String) -> [Mapping] {
        var result: [Mapping] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6 else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
                  let offset = UInt64(fields[2], radix: 16) else { continue }
            let path = String(fields[5].trimmingSpaces)
            guard path.hasPrefix("/") || path == "[vdso]" else { continue }
            result.append(Mapping(start: start, end: end, offset: offset, path: path))
        }
        return result
    }
}

/// User frames of processes: their mappings (re-read per report; remembered for processes
/// that may exit before the report) and each file's symbols (read once per file).
final class UserSymbolizer {
    private var files: [String: ELFSymbols?] = [:]
    private var live: [Int32: [Mapping]] = [:]
    private var remembered: [Int32: [Mapping]] = [:]

    /// Forgets mappings read for an earlier report: processes come and go between intervals.
    func newReport() { live.removeAll() }

    /// Keeps a copy of the process's mappings for after it has exited (`-c`, `-p`).
    func remember(pid: Int32) {
        let mappings = Mapping.parse(maps: (try? FileSystem.readString("/proc/\(pid)/maps")) ?? "")
        if !mappings.isEmpty { remembered[pid] = mappings }
    }

    func frame(_ address: UInt64, pid: Int32?) -> Frame {
        var frame = Frame(address: address, symbol: nil, offset: 0, module: nil, isKernel: false)
        guard let pid, let mapping = mappings(pid).first(where: { address >= $0.start && address < $0.end }) else { return frame }
        frame.module = mapping.path.split(separator: "/").last.map(String.init) ?? mapping.path
        guard mapping.path.hasPrefix("/"), let symbols = symbols(mapping.path, pid: pid) else { return frame }
        if let (name, offset) = symbols.lookup(fileOffset: address - mapping.start + mapping.offset) {
            frame.symbol = name
            frame.offset = offset
        }
        return frame
    }

    private func mappings(_ pid: Int32) -> [Mapping] {
        if let known = live[pid] { return known }
        var mappings = Mapping.parse(maps: (try? FileSystem.readString("/proc/\(pid)/maps")) ?? "")
        if mappings.isEmpty { mappings = remembered[pid] ?? [] }
        live[pid] = mappings
        return mappings
    }

    /// The file as the process sees it (through /proc/PID/root, for processes in other mount
    /// namespaces), else as kprobe-run sees it.
    private func symbols(_ path: String, pid: Int32) -> ELFSymbols? {
        if let cached = files[path] { return cached }
        let loaded = ELFSymbols(path: "/proc/\(pid)/root" + path) ?? ELFSymbols(path: path)
        files[path] = loaded
        return loaded
    }
}
