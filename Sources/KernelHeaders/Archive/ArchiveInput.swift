import CLibArchive
import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// What a file given with --headers turned out to hold.
enum ArchiveInput {
    /// A kheaders tar.xz: directly, or from a kheaders.ko / vmlinux (`kind` says which).
    case archive(ArchiveBytes, HeaderSourceKind)
    /// Kernel BTF: a vmlinux without built-in kheaders but with a .BTF section, or raw BTF.
    case btf(path: String, HeaderSourceKind)

    private static let elfMagic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
    private static let gzipMagic: [UInt8] = [0x1F, 0x8B]
    private static let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
    /// Decompressed modules larger than this are not kheaders.ko (about 4 MiB).
    private static let moduleLimit = 256 << 20

    /// Classifies `path` by content, not by name.
    static func load(_ path: String) throws(HeaderError) -> ArchiveInput {
        let file = try MappedFile(path)
        let head = Array(file.bytes.prefix(8))
        if head.starts(with: elfMagic) {
            return try fromELF(file.writableBytes, name: path, btfPath: path)
        }
        if head.starts(with: SecureExtractor.xzMagic) {
            // Both kheaders.tar.xz and kheaders.ko.xz start like this; the payload decides.
            if try decompress(file.bytes, name: path, limit: 4, allowShort: true).starts(with: elfMagic) {
                let module = try decompress(file.bytes, name: path, limit: moduleLimit, allowShort: false)
                return try fromELF(module, name: path, btfPath: nil)
            }
            guard file.bytes.count <= InputLimit.archive else { throw HeaderError.unreadable(path, Errno(EFBIG)) }
            return .archive(ArchiveBytes(bytes: Array(file.bytes), name: path), .archive)
        }
        if head.starts(with: gzipMagic) || head.starts(with: zstdMagic) {
            let module = try decompress(file.bytes, name: path, limit: moduleLimit, allowShort: false)
            guard module.starts(with: elfMagic) else {
                throw HeaderError("\(path) is compressed but holds no kernel module; kheaders archives are .tar.xz")
            }
            return try fromELF(module, name: path, btfPath: nil)
        }
        if head.count >= 2, (head[0] == 0x9F && head[1] == 0xEB) || (head[0] == 0xEB && head[1] == 0x9F) {
            return .btf(path: path, .btf)
        }
        throw HeaderError("\(path) is not a kheaders archive (.tar.xz), a kernel module, a vmlinux or BTF; point --headers at one of those or at a header directory")
    }

    private static func fromELF(_ image: [UInt8], name: String, btfPath: String?) throws(HeaderError) -> ArchiveInput {
        var image = image
        let found = image.withUnsafeMutableBytes { bytes in
            Result { () throws(HeaderError) -> ArchiveInput in try fromELF(bytes, name: name, btfPath: btfPath) }
        }
        return try found.get()
    }

    private static func fromELF(_ image: UnsafeMutableRawBufferPointer, name: String, btfPath: String?) throws(HeaderError) -> ArchiveInput {
        let headers = try ELFHeaders.find(in: image, name: name)
        if let archive = headers.archive {
            return .archive(ArchiveBytes(bytes: archive, name: name), headers.isRelocatable ? .moduleFile : .vmlinuxFile)
        }
        if headers.hasBTF, let btfPath {
            return .btf(path: btfPath, .vmlinuxFile)
        }
        throw HeaderError("\(name) has no kernel_headers_data symbols\(btfPath == nil ? "" : " and no .BTF section"), so it carries no kernel headers; use a kernel built with CONFIG_IKHEADERS (its kheaders.ko) or CONFIG_DEBUG_INFO_BTF")
    }

    /// A compressed kernel module (kheaders.ko.xz/.gz/.zst), decompressed.
    static func decompressModule(_ input: UnsafeRawBufferPointer, name: String) throws(HeaderError) -> [UInt8] {
        try decompress(input, name: name, limit: moduleLimit, allowShort: false)
    }

    /// Decompresses with libarchive's raw reader (xz, gzip or zstd).
    private static func decompress(_ input: UnsafeRawBufferPointer, name: String, limit: Int, allowShort: Bool) throws(HeaderError) -> [UInt8] {
        guard let reader = archive_read_new() else { throw HeaderError("cannot allocate an archive reader", kind: .internal) }
        defer { archive_read_free(reader) }
        archive_read_support_filter_xz(reader)
        archive_read_support_filter_gzip(reader)
        archive_read_support_filter_zstd(reader)
        archive_read_support_format_raw(reader)
        var entry: OpaquePointer?
        guard archive_read_open_memory(reader, input.baseAddress, input.count) == ARCHIVE_OK,
              archive_read_next_header(reader, &entry) == ARCHIVE_OK else {
            throw HeaderError("\(name) cannot be decompressed (\(archive_error_string(reader).map { String(cString: $0) } ?? "unknown format")); it is truncated or corrupt")
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while output.count < limit {
            let n = chunk.withUnsafeMutableBytes { archive_read_data(reader, $0.baseAddress, $0.count) }
            if n == 0 { break }
            guard n > 0 else {
                throw HeaderError("\(name) is truncated or corrupt (\(archive_error_string(reader).map { String(cString: $0) } ?? "read error"))")
            }
            output.append(contentsOf: chunk[0..<n])
        }
        if output.count >= limit, !allowShort {
            throw HeaderError("\(name) decompresses to more than \(limit >> 20) MiB; it is not a kheaders module")
        }
        return output
    }
}

/// The kheaders archive embedded in an ELF file: the bytes between the symbols
/// `kernel_headers_data` and `kernel_headers_data_end` (kernel/kheaders_data.S), read through
/// libelf without loading anything.
struct ELFHeaders {
    var archive: [UInt8]?
    var hasBTF: Bool
    var isRelocatable: Bool

    /// `image` must be writable: libelf converts a foreign-endian file in place.
    static func find(in image: UnsafeMutableRawBufferPointer, name: String) throws(HeaderError) -> ELFHeaders {
        guard let file = ELFImage(memory: image) else {
            throw HeaderError("\(name) is not a readable ELF file (\(ELFImage.lastError)); it is truncated or corrupt")
        }
        let elf = file.handle
        guard let ehdr = file.header else {
            throw HeaderError("\(name) has no readable ELF header; it is truncated or corrupt")
        }
        var start: GElf_Sym?
        var end: GElf_Sym?
        var hasBTF = false
        for section in file.sections {
            if section.name == ".BTF" { hasBTF = true }
            guard section.header.sh_type == UInt32(SHT_SYMTAB) else { continue }
            file.forEachSymbol(in: section) { sym, symbolName in
                if strcmp(symbolName, "kernel_headers_data") == 0 { start = sym }
                if strcmp(symbolName, "kernel_headers_data_end") == 0 { end = sym }
                return start == nil || end == nil
            }
        }
        let relocatable = ehdr.e_type == UInt16(ET_REL)
        guard let start, let end else { return ELFHeaders(archive: nil, hasBTF: hasBTF, isRelocatable: relocatable) }
        guard start.st_shndx == end.st_shndx, let section = elf_getscn(elf, Int(start.st_shndx)) else {
            throw HeaderError("\(name): kernel_headers_data and kernel_headers_data_end are not in one section; the file is damaged")
        }
        var shdr = GElf_Shdr()
        guard gelf_getshdr(section, &shdr) != nil, shdr.sh_type != UInt32(SHT_NOBITS) else {
            throw HeaderError("\(name): the section holding kernel_headers_data has no file contents; the file is damaged")
        }
        // In a module symbol values are section offsets; in vmlinux they are addresses.
        let base = relocatable ? 0 : shdr.sh_addr
        guard start.st_value >= base, end.st_value >= start.st_value,
              end.st_value - base <= shdr.sh_size,
              shdr.sh_offset + (end.st_value - base) <= UInt64(image.count) else {
            throw HeaderError("\(name): kernel_headers_data lies outside its section; the file is damaged")
        }
        let from = Int(shdr.sh_offset + (start.st_value - base))
        let to = Int(shdr.sh_offset + (end.st_value - base))
        return ELFHeaders(archive: Array(image[from..<to]), hasBTF: hasBTF, isRelocatable: relocatable)
    }
}

/// A file mapped privately (copy-on-write, so libelf may write to it without touching the file),
/// or read into memory when it cannot be mapped (/proc, /sys, pipes).
final class MappedFile {
    private let base: UnsafeMutableRawPointer?
    private let length: Int
    private let mapped: Bool

    init(_ path: String) throws(HeaderError) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, O_RDONLY)
        } catch {
            throw HeaderError("cannot open \(path): \(error)\(error.isPermission ? "; run as root or make it readable" : "")",
                              kind: error.isPermission ? .notPermitted : .noKernelHeaders)
        }
        let st: stat
        do {
            st = try fd.status()
        } catch {
            throw HeaderError("cannot inspect \(path): \(error)")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw HeaderError("\(path) is a directory", kind: .internal) }
        if (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0,
           let map = mmap(nil, Int(st.st_size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.rawValue, 0), map != MAP_FAILED {
            base = map
            length = Int(st.st_size)
            mapped = true
            return
        }
        let contents: [UInt8]
        do {
            contents = try fd.readAll(limit: InputLimit.archive)
        } catch {
            throw HeaderError.unreadable(path, error)
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(contents.count, 1), alignment: 16)
        if !contents.isEmpty {
            contents.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        base = copy
        length = contents.count
        mapped = false
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: length) }
    var writableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: length) }

    deinit {
        if mapped { munmap(base, length) } else { base?.deallocate() }
    }
}
