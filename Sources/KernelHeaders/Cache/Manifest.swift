import KprobeSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The file an entry is complete with: written last, it lists every file with its size, so a
/// damaged or partly deleted entry is noticed before a compile reads from it.
///
/// It holds nothing about where the archive came from, so the same archive read from a .tar.xz
/// and from a .ko gives byte-identical manifests.
struct Manifest: Equatable, Sendable {
    static let fileName = "MANIFEST"
    static let formatLine = "kprobe-run headers manifest 1"

    /// How the entry is named: by the running kernel's build id, or by the archive's digest.
    enum Key: String, Sendable {
        case kernel
        case archive
    }

    var key: Key
    var archiveDigest: String
    var release: String
    var members: [TreeMember]

    var totalBytes: Int64 {
        members.reduce(0) { sum, member in
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
        return Array(text.utf8)
    }

    static func decode(_ bytes: [UInt8]) -> Manifest? {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        guard lines.count >= 4, String(decoding: lines[0], as: UTF8.self) == formatLine else { return nil }
        func value(_ line: ArraySlice<UInt8>, _ name: String) -> String? {
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix(name + " ") else { return nil }
            return String(text.dropFirst(name.count + 1))
        }
        guard let keyText = value(lines[1], "key"), let key = Key(rawValue: keyText),
              let digest = value(lines[2], "archive-sha256"),
              let release = value(lines[3], "release") else { return nil }
        var members: [TreeMember] = []
        members.reserveCapacity(lines.count - 4)
        for line in lines.dropFirst(4) {
            guard line.count > 2, line[line.startIndex + 1] == UInt8(ascii: " ") else { return nil }
            let rest = line.dropFirst(2)
            switch line.first {
            case UInt8(ascii: "f"):
                guard let space = rest.firstIndex(of: UInt8(ascii: " ")),
                      let size = Int64(String(decoding: rest[..<space], as: UTF8.self)) else { return nil }
                members.append(TreeMember(path: String(decoding: rest[(space + 1)...], as: UTF8.self), kind: .file(size: size)))
            case UInt8(ascii: "l"):
                members.append(TreeMember(path: String(decoding: rest, as: UTF8.self), kind: .symlink))
            default:
                return nil
            }
        }
        return Manifest(key: key, archiveDigest: digest, release: release, members: members)
    }

    /// Reads and checks the entry open at `entryFD`: every listed file present, not a symlink,
    /// with its recorded size; every listed symlink still a symlink.
    static func verified(entryFD: Int32) -> Manifest? {
        guard let bytes = TreeOps.read(fileName, in: entryFD), let manifest = decode(bytes) else { return nil }
        var st = stat()
        for member in manifest.members {
            // Member paths were checked at extraction; a manifest naming anything else was not
            // written by us and the entry is not used.
            if member.path.hasPrefix("/") || member.path.split(separator: "/").contains("..") { return nil }
            guard fstatat(entryFD, member.path, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
            switch member.kind {
            case .file(let size):
                guard (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_size) == size else { return nil }
            case .symlink:
                guard (st.st_mode & S_IFMT) == S_IFLNK else { return nil }
            }
        }
        return manifest
    }
}
