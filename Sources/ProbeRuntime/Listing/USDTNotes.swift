import CLibELF
import Glibc
import KprobeSupport

/// One USDT probe of a binary, as `<sys/sdt.h>` records it in `.note.stapsdt`.
struct USDTProbe: Equatable, Sendable {
    var provider: String
    var name: String
    /// The argument locations, e.g. "-4@%esi 8@-24(%rbp)".
    var arguments: String
    /// Guarded by a semaphore that a tracer must raise before the probe's site runs.
    var hasSemaphore: Bool

    /// Each note (owner "stapsdt", type 3) holds three addresses of the binary's word size
    /// (probe site, link-time `.stapsdt.base`, semaphore or 0), then provider, name and argument
    /// strings, each NUL-terminated.
    init?(descriptor: some Collection<UInt8>, addressSize: Int) {
        let bytes = Array(descriptor)
        guard bytes.count > 3 * addressSize else { return nil }
        let semaphore = bytes[2 * addressSize..<3 * addressSize]
        let strings = bytes[(3 * addressSize)...].split(separator: 0, omittingEmptySubsequences: false)
        guard strings.count >= 2, !strings[0].isEmpty, !strings[1].isEmpty else { return nil }
        provider = String(decoding: strings[0], as: UTF8.self)
        name = String(decoding: strings[1], as: UTF8.self)
        arguments = strings.count > 2 ? String(decoding: strings[2], as: UTF8.self) : ""
        hasSemaphore = semaphore.contains { $0 != 0 }
    }

    init(provider: String, name: String, arguments: String, hasSemaphore: Bool) {
        self.provider = provider
        self.name = name
        self.arguments = arguments
        self.hasSemaphore = hasSemaphore
    }

    /// The probes in the ELF file at `path`, in note order; none for a binary without USDT probes.
    static func probes(in path: String) throws(RuntimeError) -> [USDTProbe] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let err = Errno.current
            throw RuntimeError(err.isPermission ? .notPermitted : .usage, "cannot open \(path) to read its USDT probes: \(err)")
        }
        defer { close(fd) }
        guard let image = ELFImage(descriptor: fd) else {
            throw RuntimeError(.usage, "\(path) is not an ELF file, so it has no USDT probes")
        }
        guard let section = image.section(named: ".note.stapsdt"), section.header.sh_type == UInt32(SHT_NOTE),
              let data = elf_getdata(section.handle, nil), let base = data.pointee.d_buf else { return [] }
        let addressSize = gelf_getclass(image.handle) == ELFCLASS32 ? 4 : 8
        let bytes = UnsafeRawBufferPointer(start: base, count: data.pointee.d_size)
        var probes: [USDTProbe] = []
        var header = GElf_Nhdr()
        var offset = 0, nameOffset = 0, descriptorOffset = 0
        while true {
            let next = gelf_getnote(data, offset, &header, &nameOffset, &descriptorOffset)
            guard next > offset else { break }
            offset = next
            guard header.n_type == 3, descriptorOffset + Int(header.n_descsz) <= bytes.count,
                  let probe = USDTProbe(descriptor: bytes[descriptorOffset..<descriptorOffset + Int(header.n_descsz)], addressSize: addressSize)
            else { continue }
            probes.append(probe)
        }
        return probes
    }

    /// The files process `pid` maps (its executable and libraries), each as the process names it
    /// and as a path this process can open: through /proc/PID/root when the process has another
    /// root (a container), as it is otherwise (libbpf matches it against the process's mappings on
    /// kernels without BPF cookies). nil when its maps cannot be read.
    static func mappedFiles(of pid: Int32) -> [(shown: String, path: String)]? {
        guard let maps = try? FileSystem.readString("/proc/\(pid)/maps") else { return nil }
        let root = sameFile("/proc/\(pid)/root", "/") ? "" : "/proc/\(pid)/root"
        var seen = Set<String>()
        return Mapping.parse(maps: maps).compactMap { mapping in
            guard mapping.path.hasPrefix("/"), seen.insert(mapping.path).inserted else { return nil }
            return (mapping.path, root + mapping.path)
        }
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat(), second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }
}
