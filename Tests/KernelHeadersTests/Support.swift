import CLibArchive
import Glibc
import KernelHeaders
import KprobeSupport
import Synchronization
import TestSupport

/// One member of a test archive.
struct Member {
    var path: String
    var type: mode_t = S_IFREG
    var perm: mode_t = 0o644
    var data: [UInt8] = []
    var symlink: String? = nil
    var hardlink: String? = nil

    static func file(_ path: String, _ text: String = "x", perm: mode_t = 0o644) -> Member {
        Member(path: path, perm: perm, data: Array(text.utf8))
    }
    static func dir(_ path: String) -> Member { Member(path: path, type: S_IFDIR, perm: 0o755) }
    static func link(_ path: String, to target: String) -> Member { Member(path: path, type: S_IFLNK, perm: 0o777, symlink: target) }
}

enum Compression { case xz, gzip, none }

/// Writes a tar archive with libarchive's writer, as written: no name sanitizing.
func writeArchive(_ members: [Member], to path: String, compression: Compression = .xz) {
    let writer = archive_write_new()
    switch compression {
    case .xz: archive_write_add_filter_xz(writer)
    case .gzip: archive_write_add_filter_gzip(writer)
    case .none: break
    }
    archive_write_set_format_pax_restricted(writer)
    precondition(archive_write_open_filename(writer, path) == ARCHIVE_OK)
    for member in members {
        let entry = archive_entry_new()
        archive_entry_set_pathname(entry, member.path)
        archive_entry_set_filetype(entry, member.type)
        archive_entry_set_perm(entry, member.perm)
        archive_entry_set_mtime(entry, 1_700_000_000, 0)
        if let target = member.symlink { archive_entry_set_symlink(entry, target) }
        if let target = member.hardlink { archive_entry_set_hardlink(entry, target) }
        if member.type == S_IFCHR || member.type == S_IFBLK {
            archive_entry_set_rdevmajor(entry, 1)
            archive_entry_set_rdevminor(entry, 3)
        }
        archive_entry_set_size(entry, member.type == S_IFREG && member.hardlink == nil ? Int64(member.data.count) : 0)
        precondition(archive_write_header(writer, entry) == ARCHIVE_OK)
        if member.type == S_IFREG, member.hardlink == nil, !member.data.isEmpty {
            _ = member.data.withUnsafeBytes { archive_write_data(writer, $0.baseAddress, $0.count) }
        }
        archive_entry_free(entry)
    }
    archive_write_close(writer)
    archive_write_free(writer)
}

/// Writes `bytes` as one xz stream (no tar around them).
func writeCompressed(_ bytes: [UInt8], to path: String) {
    let writer = archive_write_new()
    archive_write_add_filter_xz(writer)
    archive_write_set_format_raw(writer)
    precondition(archive_write_open_filename(writer, path) == ARCHIVE_OK)
    let entry = archive_entry_new()
    archive_entry_set_pathname(entry, "data")
    archive_entry_set_filetype(entry, S_IFREG)
    archive_entry_set_size(entry, Int64(bytes.count))
    precondition(archive_write_header(writer, entry) == ARCHIVE_OK)
    _ = bytes.withUnsafeBytes { archive_write_data(writer, $0.baseAddress, $0.count) }
    archive_entry_free(entry)
    archive_write_close(writer)
    archive_write_free(writer)
}

func readFile(_ path: String) -> [UInt8]? { try? FileSystem.read(path) }

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func lstatMode(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode : nil
}

func mtime(_ path: String) -> timespec? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mtim : nil
}

/// Collects -v lines from any thread.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: @Sendable (String) -> Void { { line in self.lines.withLock { $0.append(line) } } }
}

enum TestKernel {
    static let archive = TestInputs.testKernelArchive
    static let module = TestInputs.testKernelModule
    static let arm64Archive = TestInputs.arm64Archive
    static let release = TestInputs.testKernelRelease
    static var available: Bool { FileSystem.isRegularFile(archive) && FileSystem.isRegularFile(module) }
}

func options(_ scratch: ScratchDirectory, source: String? = nil, log: LogLines? = nil, arch: KernelArch? = nil) -> HeaderOptions {
    var sink: @Sendable (String) -> Void = { _ in }
    if let log { sink = log.sink }
    return HeaderOptions(explicitSource: source, keepModule: false, allowBTF: true, showProgress: false,
                         log: sink, cache: scratch.cache, arch: arch)
}

/// Compresses a whole file as a kernel module packager does (.ko.xz, .ko.gz, .ko.zst).
func compressFile(_ input: String, to output: String, compression: String) {
    let bytes = try! FileSystem.read(input)
    let writer = archive_write_new()
    switch compression {
    case "xz": archive_write_add_filter_xz(writer)
    case "gz": archive_write_add_filter_gzip(writer)
    default: archive_write_add_filter_zstd(writer)
    }
    archive_write_set_format_raw(writer)
    precondition(archive_write_open_filename(writer, output) == ARCHIVE_OK)
    let entry = archive_entry_new()
    archive_entry_set_filetype(entry, S_IFREG)
    archive_entry_set_size(entry, Int64(bytes.count))
    archive_write_header(writer, entry)
    _ = bytes.withUnsafeBytes { archive_write_data(writer, $0.baseAddress, $0.count) }
    archive_entry_free(entry)
    archive_write_close(writer)
    archive_write_free(writer)
}
