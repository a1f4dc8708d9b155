import CLibELF

#if canImport(Glibc)
import Glibc
#endif

/// An ELF file opened with libelf (from memory or a descriptor), closed with the value: the one
/// walk over sections and symbols that reading kheaders out of a module, an object's metadata
/// and a binary's symbols share.
public struct ELFImage: ~Copyable {
    public let handle: OpaquePointer
    private let sectionNames: Int

    /// An image in memory. libelf converts a foreign-endian file in place, so it must be
    /// writable when the file may be foreign-endian; nil when it is not ELF.
    public init?(memory: UnsafeMutableRawBufferPointer) {
        guard let base = memory.baseAddress, memory.count > 0 else { return nil }
        elf_version(UInt32(EV_CURRENT))
        guard let elf = elf_memory(base.assumingMemoryBound(to: CChar.self), memory.count) else { return nil }
        self.init(elf)
    }

    /// An image read through `descriptor` (mapped), which must stay open while this is used.
    public init?(descriptor: Int32) {
        elf_version(UInt32(EV_CURRENT))
        guard let elf = elf_begin(descriptor, ELF_C_READ_MMAP, nil) else { return nil }
        self.init(elf)
    }

    private init?(_ elf: OpaquePointer) {
        guard elf_kind(elf) == ELF_K_ELF else {
            elf_end(elf)
            return nil
        }
        handle = elf
        var index = 0
        sectionNames = elf_getshdrstrndx(elf, &index) == 0 ? index : -1
    }

    deinit { elf_end(handle) }

    /// What is wrong with `bytes` as a BPF object for libbpf (an ELF relocatable file for
    /// EM_BPF, every section within the file), nil when nothing is: said before libbpf says
    /// "Unknown error 4001" of a truncated file.
    public static func bpfObjectProblem(_ bytes: [UInt8]) -> String? {
        var copy = bytes
        return copy.withUnsafeMutableBytes { buffer -> String? in
            guard let image = ELFImage(memory: buffer), let header = image.header else {
                return "it is not a readable ELF file (\(lastError)); it is truncated or corrupt"
            }
            guard header.e_machine == UInt16(EM_BPF) else {
                return "it is built for ELF machine \(header.e_machine), not for BPF (compile with kprobe-run compile or clang -target bpf)"
            }
            guard header.e_type == UInt16(ET_REL) else {
                return "it is not a relocatable object (ELF type \(header.e_type)); give the .o that clang or kprobe-run compile wrote"
            }
            var count = 0
            guard elf_getshdrnum(image.handle, &count) == 0, count > 0 else {
                return "its section headers cannot be read; it is truncated or corrupt"
            }
            let sections = image.sections
            guard sections.count == count - 1 else {
                return "\(count - 1 - sections.count) of its sections cannot be read; it is truncated or corrupt"
            }
            for section in sections where section.header.sh_type != UInt32(SHT_NOBITS) {
                guard section.header.sh_offset.addingReportingOverflow(section.header.sh_size).partialValue <= UInt64(buffer.count),
                      elf_getdata(section.handle, nil) != nil else {
                    return "section \(section.name ?? "#\(section.header.sh_name)") lies beyond the end of the file; it is truncated or corrupt"
                }
            }
            return nil
        }
    }

    /// libelf's last error, for messages.
    public static var lastError: String { String(cString: elf_errmsg(-1)) }

    public var header: GElf_Ehdr? {
        var ehdr = GElf_Ehdr()
        return gelf_getehdr(handle, &ehdr) != nil ? ehdr : nil
    }

    public struct Section {
        public let handle: OpaquePointer
        public let header: GElf_Shdr
        /// nil when the section-name table is missing or damaged.
        public let name: String?

        /// The section's contents; nil for SHT_NOBITS or unreadable data.
        public var contents: UnsafeRawBufferPointer? {
            guard header.sh_type != UInt32(SHT_NOBITS), let data = elf_getdata(handle, nil), let buffer = data.pointee.d_buf else { return nil }
            return UnsafeRawBufferPointer(start: buffer, count: Int(data.pointee.d_size))
        }
    }

    /// Every section whose header libelf can read, in order; valid while the image lives.
    public var sections: [Section] {
        var result: [Section] = []
        var scn = elf_nextscn(handle, nil)
        while let current = scn {
            var shdr = GElf_Shdr()
            if gelf_getshdr(current, &shdr) != nil {
                let name = sectionNames >= 0 ? elf_strptr(handle, sectionNames, Int(shdr.sh_name)).map { String(cString: $0) } : nil
                result.append(Section(handle: current, header: shdr, name: name))
            }
            scn = elf_nextscn(handle, current)
        }
        return result
    }

    public func section(named name: String) -> Section? { sections.first { $0.name == name } }

    /// Calls `body` with each symbol of a SHT_SYMTAB or SHT_DYNSYM section and its name (a C
    /// string valid while the image lives) until it returns false.
    public func forEachSymbol(in section: Section, _ body: (GElf_Sym, UnsafePointer<CChar>) -> Bool) {
        guard section.header.sh_entsize > 0, let data = elf_getdata(section.handle, nil) else { return }
        let count = Int(section.header.sh_size / section.header.sh_entsize)
        var symbol = GElf_Sym()
        for index in 0..<count where gelf_getsym(data, Int32(index), &symbol) != nil {
            guard let name = elf_strptr(handle, Int(section.header.sh_link), Int(symbol.st_name)) else { continue }
            if !body(symbol, name) { return }
        }
    }
}
