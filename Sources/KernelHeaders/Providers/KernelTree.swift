import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// A header tree used where it lies: the kernel's build directory (generated headers) and its
/// source directory (everything else), which are one directory unless a distribution splits
/// them (Debian: build → linux-headers-<release>-<flavour>, source → linux-headers-<release>-common).
struct KernelTree: Sendable, Equatable {
    var source: String
    var build: String

    /// Checks `directory`, resolving symlinks; nil with a note when it is missing, a broken
    /// link or incomplete. `sourceHint` is the `source` link next to a modules `build` link.
    static func locate(_ directory: String, sourceHint: String? = nil, notes: inout [String]) -> KernelTree? {
        guard let build = TreeOps.canonical(directory) else {
            var st = stat()
            if lstat(directory, &st) == 0 {
                notes.append("\(directory) is a broken symlink")
            } else {
                notes.append("\(directory) does not exist")
            }
            return nil
        }
        guard FileSystem.isDirectory(build) else {
            notes.append("\(directory) is not a directory")
            return nil
        }
        if !hasGenerated(build), FileSystem.isDirectory(build + "/build") {
            // A /lib/modules/<release> directory: use its build (and source) links.
            return locate(build + "/build", sourceHint: build + "/source", notes: &notes)
        }
        guard hasGenerated(build) else {
            notes.append("\(directory) has no include/generated/autoconf.h (not a configured kernel tree)")
            return nil
        }
        if hasSources(build) { return KernelTree(source: build, build: build) }
        // kbuild's O= output directories carry a `source` link; Debian's build directory
        // names the common tree in its Makefile.
        var candidates = [sourceHint, build + "/source"].compactMap { $0 }
        candidates += makefileInclude(build + "/Makefile")
        for candidate in candidates {
            if let source = TreeOps.canonical(candidate), hasSources(source) {
                return KernelTree(source: source, build: build)
            }
        }
        notes.append("\(directory) has generated headers but no include/linux/kconfig.h, and no source tree was found next to it")
        return nil
    }

    private static func hasGenerated(_ dir: String) -> Bool {
        FileSystem.isRegularFile(dir + "/include/generated/autoconf.h")
    }

    private static func hasSources(_ dir: String) -> Bool {
        FileSystem.isRegularFile(dir + "/include/linux/kconfig.h")
    }

    /// Directories of `include <dir>/Makefile` lines (Debian's headers packages).
    private static func makefileInclude(_ makefile: String) -> [String] {
        guard let text = try? FileSystem.readString(makefile) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count == 2, words[0] == "include", words[1].hasPrefix("/"), words[1].hasSuffix("/Makefile") else { return nil }
            return String(words[1].dropLast("/Makefile".count))
        }
    }

    /// `<release>-<digest12>`: the tree's release and a digest of where it is and of its
    /// configuration, so a reconfigured or moved tree gets new compile-cache keys.
    var identity: String {
        let release = KernelFlags.release(ofTree: build) ?? "tree"
        var hasher = SHA256()
        hasher.update(source + "\u{0}" + build + "\u{0}")
        for file in ["/include/generated/autoconf.h", "/include/generated/utsrelease.h"] {
            var st = stat()
            if stat(build + file, &st) == 0 {
                hasher.update("\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ino)\u{0}")
            }
        }
        return "\(release)-\(String(hasher.hexDigest().prefix(12)))"
    }
}
