import CLibArchive
import CLibELF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// Unpacks a kheaders tar.xz below a directory descriptor without ever leaving it.
///
/// Two steps, each in one place: this parser checks every member and records it in an
/// `ArchivePlan` (names, types, limits, hard links to earlier files, symlinks that stay inside the
/// tree, no member in the way of another), with where its bytes lie in the decompressed image;
/// `TreeWriter` makes the plan into files. `extract` writes each member as soon as it is checked
/// (decompression, parsing and file creation overlap); `plan` only checks, so that the cache can
/// hand the image to the compiler while the files are written on another thread.
///
/// The xz stream is decompressed on a second thread (`DecompressionPipe`) into the image; this
/// one parses the tar stream from it.
final class SecureExtractor {
    /// Room in the tar stream for each member's header blocks and padding, beyond its data.
    static let tarOverheadPerEntry: Int64 = 4096
    /// Room for the end-of-archive blocks and the record padding after them.
    static let tarTrailer: Int64 = 1 << 20

    private let archiveName: String
    private let limits: ExtractionLimits
    private let progress: ExtractionProgress?
    private let plan: ArchivePlan
    /// Writes each member as soon as it is checked; nil when only planning.
    private let writer: TreeWriter?

    private var entryCount = 0
    private var totalBytes: Int64 = 0

    private init(archiveName: String, limits: ExtractionLimits, progress: ExtractionProgress?, image: ArchiveImage,
                 writer: TreeWriter?) {
        self.archiveName = archiveName
        self.limits = limits
        self.progress = progress
        self.writer = writer
        plan = ArchivePlan(image: image, archiveName: archiveName)
    }

    static let xzMagic: [UInt8] = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]

    /// Unpacks `archive` (xz-compressed tar) into the directory open at `rootFD`; returns the
    /// regular files and symlinks written. On error the caller removes the directory.
    /// Nothing is made durable here: the cache flushes the whole tree at once (syncfs)
    /// afterwards; with `flushing` the tree is also flushed as it grows (`Writeback`), so that
    /// the last flush finds little left.
    static func extract(_ archive: [UInt8], archiveName: String, into rootFD: Int32, limits: ExtractionLimits,
                        progress: ExtractionProgress?, flushing: Bool) throws(HeaderError) -> [TreeMember] {
        let writer = TreeWriter(rootFD: rootFD, archiveName: archiveName, writeback: flushing ? Writeback(flushing: rootFD) : nil)
        let plan = try run(archive, archiveName: archiveName, limits: limits, progress: progress, writer: writer)
        try writer.createLinks(plan.links)
        return writer.members
    }

    /// Checks `archive` and records its members without writing anything; `ArchivePlan.write`
    /// writes them later.
    static func plan(_ archive: [UInt8], archiveName: String, limits: ExtractionLimits) throws(HeaderError) -> ArchivePlan {
        try run(archive, archiveName: archiveName, limits: limits, progress: nil, writer: nil)
    }

    private static func run(_ archive: [UInt8], archiveName: String, limits: ExtractionLimits, progress: ExtractionProgress?,
                            writer: TreeWriter?) throws(HeaderError) -> ArchivePlan {
        guard archive.starts(with: xzMagic) else {
            throw HeaderError("\(archiveName) is not an xz-compressed archive (kheaders archives are .tar.xz); point --headers at the kernel's kheaders.tar.xz, kheaders.ko, a vmlinux or a header directory")
        }
        let result = archive.withUnsafeBytes { bytes in
            Result { () throws(HeaderError) -> ArchivePlan in
                let pipe = try DecompressionPipe(bytes, archiveName: archiveName, maxBytes: maxStreamBytes(limits))
                defer { pipe.stop() }
                let extractor = SecureExtractor(archiveName: archiveName, limits: limits, progress: progress,
                                                image: pipe.image, writer: writer)
                try extractor.parse(pipe)
                return extractor.plan
            }
        }
        return try result.get()
    }

    /// The most the tar stream inside may decompress to: the unpacked-size cap plus room for
    /// every allowed member's headers. Data libarchive skips (the contents of a directory entry,
    /// say) counts here although it is never written.
    static func maxStreamBytes(_ limits: ExtractionLimits) -> Int64 {
        let headers = Int64(limits.maxEntries).multipliedReportingOverflow(by: tarOverheadPerEntry)
        let data = limits.maxTotalBytes.addingReportingOverflow(headers.partialValue)
        let total = data.partialValue.addingReportingOverflow(tarTrailer)
        return headers.overflow || data.overflow || total.overflow ? .max : total.partialValue
    }

    private func parse(_ pipe: DecompressionPipe) throws(HeaderError) {
        guard let reader = archive_read_new() else { throw HeaderError("cannot allocate an archive reader", kind: .internal) }
        defer { archive_read_free(reader) }
        // Only what kheaders produces: the pipe accepts nothing but xz and this reader nothing but
        // tar, with no filter of its own, so no other decompressor or format is reachable from an
        // untrusted file.
        archive_read_support_format_tar(reader)
        archive_read_support_format_gnutar(reader)
        guard pipe.open(reader) == ARCHIVE_OK else {
            throw pipe.error ?? damaged(reader)
        }
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(reader, &entry)
            if status == ARCHIVE_EOF { break }
            guard status >= ARCHIVE_WARN, let entry else { throw pipe.error ?? damaged(reader) }
            try unpack(entry, reader: reader, pipe: pipe)
            if let progress, entryCount % 256 == 0 { progress(entryCount, totalBytes) }
        }
        // xz's integrity check, at the very end of the stream, vouches for every member above.
        try pipe.drain()
        guard entryCount > 0 else {
            throw HeaderError("\(archiveName) is an empty archive; it holds no kernel headers")
        }
        try plan.checkLinks()
        progress?(entryCount, totalBytes)
    }

    private func damaged(_ reader: OpaquePointer) -> HeaderError { Self.corrupt(archiveName, reader) }

    static func corrupt(_ archiveName: String, _ reader: OpaquePointer) -> HeaderError {
        let detail = archive_error_string(reader).map { String(cString: $0) } ?? "unreadable data"
        return HeaderError("\(archiveName) is truncated or corrupt (\(detail)); fetch the archive again or use another --headers source")
    }

    static func notXZ(_ archiveName: String) -> HeaderError {
        HeaderError("\(archiveName) is not an xz-compressed archive; point --headers at the kernel's kheaders.tar.xz, kheaders.ko, a vmlinux or a header directory")
    }

    static func refuse(_ archiveName: String, _ member: String, _ why: String) -> HeaderError {
        HeaderError("refusing \(archiveName): member '\(member.escapingControlCharacters)' \(why); nothing was unpacked from it. Use the kernel's own kheaders archive or another --headers source")
    }

    private func refuse(_ member: String, _ why: String) -> HeaderError { Self.refuse(archiveName, member, why) }

    private func unpack(_ entry: OpaquePointer, reader: OpaquePointer, pipe: DecompressionPipe) throws(HeaderError) {
        guard let rawName = archive_entry_pathname(entry) else {
            throw refuse("?", "has no usable name")
        }
        let member = String(cString: rawName)
        entryCount += 1
        guard entryCount <= limits.maxEntries else {
            throw refuse(member, "exceeds the limit of \(limits.maxEntries) members")
        }
        let components = try normalized(member, member: member)
        let type = archive_entry_filetype(entry)

        let step: ArchivePlan.Step
        if let hardlink = archive_entry_hardlink(entry) {
            guard !components.isEmpty else { throw refuse(member, "is a hard link in place of the root") }
            let target = String(cString: hardlink)
            step = .hardlink(components, target: try normalized(target, member: member), member: member)
        } else {
            switch type {
            case S_IFDIR:
                if components.isEmpty { return }
                step = .directory(components, member: member)
            case S_IFREG:
                guard !components.isEmpty else { throw refuse(member, "is a file in place of the root") }
                if archive_entry_size_is_set(entry) != 0, totalBytes + archive_entry_size(entry) > limits.maxTotalBytes {
                    throw refuse(member, "would take the unpacked size over the limit of \(limits.maxTotalBytes) bytes")
                }
                let (offset, size) = try data(of: member, reader: reader, pipe: pipe)
                // No setuid, setgid, sticky or group/other write; always readable and replaceable by us.
                let mode = (archive_entry_perm(entry) & 0o755) | 0o600
                step = .file(components, mode: mode, offset: offset, size: size, member: member)
            case S_IFLNK:
                guard !components.isEmpty else { throw refuse(member, "is a symlink in place of the root") }
                guard let target = archive_entry_symlink(entry).map({ String(cString: $0) }), !target.isEmpty else {
                    throw refuse(member, "is a symlink without a target")
                }
                guard !target.contains("\n") else { throw refuse(member, "has a newline in its symlink target") }
                plan.links.append(ArchivePlan.Link(parent: Array(components.dropLast()), name: components.last!,
                                                   target: target, member: member))
                return
            case S_IFCHR, S_IFBLK:
                throw refuse(member, "is a device node")
            case S_IFIFO:
                throw refuse(member, "is a fifo")
            case S_IFSOCK:
                throw refuse(member, "is a socket")
            default:
                throw refuse(member, "has an unsupported file type")
            }
        }
        try plan.add(step)
        try writer?.write(step, image: plan.image)
    }

    /// Where the member's data lies in the image: libarchive hands out pointers into it (a block
    /// it had to copy is found by its position in the stream and compared).
    private func data(of member: String, reader: OpaquePointer, pipe: DecompressionPipe) throws(HeaderError) -> (offset: Int, size: Int) {
        var start: Int?
        var size = 0
        while true {
            var block: UnsafeRawPointer?
            var length = 0
            var position: Int64 = 0
            let status = archive_read_data_block(reader, &block, &length, &position)
            if status == ARCHIVE_EOF { break }
            guard status >= ARCHIVE_WARN else { throw pipe.error ?? damaged(reader) }
            guard length > 0, let block else { continue }
            guard position == Int64(size) else { throw refuse(member, "is a sparse file") }
            let streamOffset = Int(archive_filter_bytes(reader, 0))
            var offset = pipe.image.offset(of: block, length: length)
            if offset == nil, let copied = pipe.image.offset(of: pipe.image.base + streamOffset, length: length),
               memcmp(pipe.image.base + copied, block, length) == 0 {
                offset = copied
            }
            guard let offset, offset == (start ?? offset) + size else {
                throw HeaderError("cannot place the data of '\(member.escapingControlCharacters)' of \(archiveName) in the decompressed stream", kind: .internal)
            }
            if start == nil { start = offset }
            size += length
            totalBytes += Int64(length)
            guard totalBytes <= limits.maxTotalBytes else {
                throw refuse(member, "takes the unpacked size over the limit of \(limits.maxTotalBytes) bytes")
            }
        }
        return (start ?? 0, size)
    }

    /// Splits a member name into components; refuses absolute names and `..`.
    private func normalized(_ name: String, member: String) throws(HeaderError) -> [Substring] {
        if name.hasPrefix("/") { throw refuse(member, "has an absolute path") }
        if name.contains("\n") { throw refuse(member, "has a newline in its name") }
        var result: [Substring] = []
        for component in name.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." { throw refuse(member, "has a '..' component") }
            result.append(component)
        }
        return result
    }

    /// Resolves `target` as the kernel would from directory `start`, expanding every symlink
    /// of the archive met on the way; false as soon as the path climbs above the root.
    static func staysInside(from start: [Substring], target: String,
                            links: [String: (parent: [Substring], target: String)]) -> Bool {
        resolve(from: start, target: target, links: links) != nil
    }

    /// The components `target` leads to from directory `start` through the archive's symlinks;
    /// nil when it climbs above the root or loops.
    static func resolve(from start: [Substring], target: String,
                        links: [String: (parent: [Substring], target: String)]) -> [Substring]? {
        if target.hasPrefix("/") { return nil }
        var current = start
        var pending = Array(target.split(separator: "/", omittingEmptySubsequences: true).reversed())
        var hops = 0
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                if current.isEmpty { return nil }
                current.removeLast()
                continue
            }
            current.append(component)
            if let link = links[current.joined(separator: "/")] {
                hops += 1
                if hops > 40 || link.target.hasPrefix("/") { return nil }
                current.removeLast()
                pending.append(contentsOf: link.target.split(separator: "/", omittingEmptySubsequences: true).reversed())
            }
        }
        return current
    }
}
