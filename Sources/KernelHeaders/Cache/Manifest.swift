import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// The file an entry is complete with: written last, it lists every file with its size, so a
/// damaged or partly deleted entry is noticed before a compile reads from it.
///
/// It holds nothing about where the archive came from, so the same archive read from a .tar.xz
/// and from a .ko gives byte-identical manifests.
struct Manifest: Equatable, Sendable {
    static let fileName = "MANIFEST"
    /// Version 2 ends with `end <member count>`, so a manifest cut anywhere (even to its header
    /// lines) is incomplete; entries of version 1 are unpacked again.
    static let formatLine = "kprobe-run headers manifest 2"

    /// How the entry is named: by the running kernel's build id, or by the archive's digest.
    enum Key: String, Sendable {
        case kernel
        case archive
    }

    var key: Key
    var archiveDigest: String
    var release: String
    /// The members, for a manifest being written; empty for one read back by `verified`.
    var members: [TreeMember]
    /// The file bytes `verified` counted.
    var verifiedBytes: Int64 = 0

    var totalBytes: Int64 {
        if members.isEmpty { return verifiedBytes }
        return members.reduce(0) { sum, member in
            if case .file(let size) = member.kind { return sum + size }
            return sum
        }
    }

    func encoded() -> [UInt8] {
        var text = "\(Manifest.formatLine)\nkey \(key.rawValue)\narchive-sha256 \(archiveDigest)\nrelease \(release)\n"
        for member in members.sorted(by: { $0.path < $1.path }) {
            switch member.kind {
            case .file(let size): text += "f \(size) \(member.path)\n"
            case .symlink: text += "l \(member.path)\n"
            }
        }
        text += "end \(members.count)\n"
        return Array(text.utf8)
    }

    /// Reads and checks the entry open at `entryFD`: every listed file present, not a symlink,
    /// with its recorded size; every listed symlink still a symlink. Runs on every cached
    /// resolve, so it works on the raw bytes and builds no strings per member.
    static func verified(entryFD: Int32) -> Manifest? {
        guard var bytes = TreeOps.read(fileName, in: entryFD), let header = decodeHeader(bytes) else { return nil }
        var total: Int64 = 0
        let trailer = Array("end ".utf8)
        let valid = bytes.withUnsafeMutableBufferPointer { buffer -> Bool in
            let base = buffer.baseAddress!
            var st = stat()
            var lineStart = header.bodyStart
            var count = 0
            while lineStart < buffer.count {
                var lineEnd = lineStart
                while lineEnd < buffer.count, buffer[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                guard lineEnd < buffer.count, lineEnd - lineStart > 2 else { return false }
                if lineEnd - lineStart > 4, buffer[lineStart..<lineStart + 4].elementsEqual(trailer) {
                    // The last line, with the number of members above it.
                    let digits = buffer[(lineStart + 4)..<lineEnd]
                    return lineEnd + 1 == buffer.count && digits.count < 10
                        && digits.allSatisfy { $0 &- UInt8(ascii: "0") < 10 }
                        && Int(String(decoding: digits, as: UTF8.self)) == count
                }
                guard buffer[lineStart + 1] == UInt8(ascii: " ") else { return false }
                count += 1
                let type = buffer[lineStart]
                var pathStart = lineStart + 2
                var size: Int64 = -1
                if type == UInt8(ascii: "f") {
                    size = 0
                    while pathStart < lineEnd, buffer[pathStart] != UInt8(ascii: " ") {
                        let digit = buffer[pathStart] &- UInt8(ascii: "0")
                        guard digit < 10 else { return false }
                        size = size * 10 + Int64(digit)
                        pathStart += 1
                    }
                    pathStart += 1
                } else if type != UInt8(ascii: "l") {
                    return false
                }
                guard pathStart < lineEnd, buffer[pathStart] != UInt8(ascii: "/") else { return false }
                // Terminate the path in place for fstatat; restored below.
                buffer[lineEnd] = 0
                let path = UnsafeRawPointer(base + pathStart).assumingMemoryBound(to: CChar.self)
                let found = fstatat(entryFD, path, &st, AT_SYMLINK_NOFOLLOW) == 0
                let dotdot = strstr(path, "..") != nil && hasDotDotComponent(buffer, pathStart, lineEnd)
                buffer[lineEnd] = UInt8(ascii: "\n")
                guard found, !dotdot else { return false }
                if size >= 0 {
                    guard (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_size) == size else { return false }
                    total += size
                } else {
                    guard (st.st_mode & S_IFMT) == S_IFLNK else { return false }
                }
                lineStart = lineEnd + 1
            }
            return false
        }
        guard valid else { return nil }
        return Manifest(key: header.key, archiveDigest: header.digest, release: header.release,
                        members: [], verifiedBytes: total)
    }

    /// Member paths were checked at extraction; a manifest naming `..` was not written by us.
    private static func hasDotDotComponent(_ buffer: UnsafeMutableBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var componentStart = start
        for index in start...end where index == end || buffer[index] == UInt8(ascii: "/") {
            if index - componentStart == 2, buffer[componentStart] == UInt8(ascii: "."), buffer[componentStart + 1] == UInt8(ascii: ".") {
                return true
            }
            componentStart = index + 1
        }
        return false
    }

    private static func decodeHeader(_ bytes: [UInt8]) -> (key: Key, digest: String, release: String, bodyStart: Int)? {
        var values: [String] = []
        var start = 0
        while values.count < 4 {
            guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            values.append(String(decoding: bytes[start..<end], as: UTF8.self))
            start = end + 1
        }
        func value(_ line: String, _ name: String) -> String? {
            line.hasPrefix(name + " ") ? String(line.dropFirst(name.count + 1)) : nil
        }
        guard values[0] == formatLine, let keyText = value(values[1], "key"), let key = Key(rawValue: keyText),
              let digest = value(values[2], "archive-sha256"), let release = value(values[3], "release") else { return nil }
        return (key, digest, release, start)
    }
}
