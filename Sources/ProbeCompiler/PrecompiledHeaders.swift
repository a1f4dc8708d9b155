import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// What the worker's compiler can do; the worker implements it with the C++ shim. Kept apart
/// so that the precompiled-header bookkeeping below does not depend on LLVM.
public protocol ClangBackend {
    /// clang's full version: a precompiled header is only readable by the same one.
    var version: String { get }
    /// Compiles `request`, loading `precompiledHeader` first when it is given.
    func compile(_ request: CompileRequest, precompiledHeader: String?) -> WorkerProtocol.Response
    /// Parses `request.source` as a header and writes a precompiled header to `output`.
    func buildPrecompiledHeader(_ request: CompileRequest, output: String) -> WorkerProtocol.Response
    /// Runs `work` in a process of its own at idle priority that nobody waits for; false when it
    /// could not be started.
    func detached(_ work: () -> Void) -> Bool
}

/// The worker's side of precompiled headers: one per header entry, flags and leading-include
/// set, built once under a lock, loaded by every later compile that starts with the same
/// includes, and never trusted over a plain compile.
///
/// The first compile of an include block does not wait for the header: it compiles plainly while
/// a detached idle-priority process builds the header for the runs after it. Measured with the
/// bench probe (linux/sched.h, linux/fs.h, net/sock.h) on a loaded 2-core machine: plain compile
/// 8.6–9.3 s, header build 10.1 s then compile with it 0.9 s, later compiles with it 1.1–1.4 s.
/// Building the header on the second use instead would make that second run pay the 10 s.
public enum PrecompiledHeaders {
    public static func compile(_ request: CompileRequest, backend: some ClangBackend) -> WorkerProtocol.Response {
        guard let settings = request.precompiledHeaders else {
            return backend.compile(request, precompiledHeader: nil)
        }
        let prefix: PrecompiledPrefix
        switch PrecompiledPrefix.analyze(source: request.source, sourceDirectory: PrecompiledPrefix.sourceDirectory(of: request.sourcePath)) {
        case .skip(let reason):
            var response = backend.compile(request, precompiledHeader: nil)
            response.notes.append("no precompiled header: \(reason)")
            return response
        case .use(let found):
            prefix = found
        }

        let path = settings.directory + "/" + fileName(for: request, prefix: prefix, settings: settings, backend: backend)
        var withPrefix = request
        withPrefix.virtualFiles.append(VirtualFile(path: PrecompiledPrefix.virtualPath, contents: prefix.text))
        guard FileSystem.isRegularFile(path) else {
            // Started before the compile, so that an idle core builds it meanwhile; a builder
            // that finds the lock taken waits and then finds the header built. Headers still in
            // memory are built from once their entry is complete: a precompiled header records
            // the size and time of every file it read, which later compiles check.
            let started = backend.detached {
                var fromFiles = withPrefix
                if let image = fromFiles.headerImage {
                    // Not kept alive for as long as the builder waits and runs.
                    close(image.descriptor)
                    fromFiles.headerImage = nil
                }
                guard waitForEntry(of: withPrefix.headerImage) else { return }
                _ = build(fromFiles, prefix: prefix, at: path, settings: settings, backend: backend)
            }
            var response = backend.compile(request, precompiledHeader: nil)
            response.notes.insert(started ? "building precompiled header \(path) in the background, for the next runs"
                                          : "no precompiled header: cannot start a process to build one", at: 0)
            return response
        }

        var response = backend.compile(withPrefix, precompiledHeader: path)
        if response.status == 0 {
            CacheBudget.touch(path)
            response.notes.insert("loaded precompiled header \(path) (\(prefix.includeCount) leading #include lines)", at: 0)
            return response
        }
        guard mentionsPrecompiledHeader(response.diagnostics, path: path) else {
            // The probe's own error: a plain compile would say the same, only later.
            return response
        }
        // Stale (a header changed since) or unreadable: the plain compile decides, and a header
        // it does not need is removed so that the next run builds a fresh one.
        var plain = backend.compile(request, precompiledHeader: nil)
        if plain.status == 0 { unlink(path) }
        plain.notes = ["precompiled header \(path) was unusable, compiled without it\(plain.status == 0 ? " and removed it" : "")"] + plain.notes
        return plain
    }

    /// Waits until the writer of the cache entry `image` is served from has finished (it holds
    /// the header lock until then); whether the entry is complete.
    static func waitForEntry(of image: HeaderImage?) -> Bool {
        guard let image else { return true }
        do {
            let lock = try FileLock(image.lockPath, relativeTo: AT_FDCWD)
            lock.held()
        } catch {
            return false
        }
        return FileSystem.isRegularFile(image.root + "/MANIFEST")
    }

    /// `<header identity>-<digest>.pch`; the digest covers everything the header's contents
    /// depend on besides the header entry itself.
    static func fileName(for request: CompileRequest, prefix: PrecompiledPrefix, settings: PrecompiledHeaderSettings,
                         backend: some ClangBackend) -> String {
        var hasher = SHA256()
        for part in [backend.version, ExecutableIdentity.ofRunningProgram, request.frontendTriple, request.cpu?.rawValue ?? "", prefix.text] {
            hasher.update(part + "\u{0}")
        }
        hasher.update("\(request.arguments.count)\u{0}")
        for argument in request.arguments { hasher.update(argument + "\u{0}") }
        for file in request.virtualFiles {
            hasher.update("\(file.path)\u{0}\(file.contents.utf8.count)\u{0}")
            hasher.update(file.contents)
        }
        let identity = String(settings.headerIdentity.map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || "._+~-".contains(c)) ? c : "_"
        }.prefix(96))
        return "\(identity)-\(hasher.hexDigest().prefix(16)).pch"
    }

    private static func build(_ request: CompileRequest, prefix: PrecompiledPrefix, at path: String, settings: PrecompiledHeaderSettings,
                              backend: some ClangBackend) -> (note: String, diagnostics: String) {
        // Concurrent first runs wait here for one of them to build the header.
        do {
            let lock = try FileLock(settings.directory + "/.lock", relativeTo: AT_FDCWD)
            defer { lock.held() }
            // Every build holds the lock, so a temporary of a dead writer is a build that was
            // killed (Ctrl-C, SIGKILL): nothing will ever finish it.
            if let directory = try? FileDescriptor.openDirectory(settings.directory) {
                AtomicFile.removeLeftovers(in: directory.rawValue)
            }
            return buildLocked(request, prefix: prefix, at: path, backend: backend)
        } catch {
            return ("no precompiled header: cannot lock \(settings.directory)/.lock: \(error)", "")
        }
    }

    private static func buildLocked(_ request: CompileRequest, prefix: PrecompiledPrefix, at path: String,
                                    backend: some ClangBackend) -> (note: String, diagnostics: String) {
        if FileSystem.isRegularFile(path) { return ("precompiled header \(path) was built by another run meanwhile", "") }

        var headerRequest = request
        headerRequest.sourcePath = PrecompiledPrefix.virtualPath
        headerRequest.source = prefix.text
        headerRequest.precompiledHeaders = nil
        let temporary = AtomicFile.temporaryName(for: path)
        let started = MonotonicClock.now
        let response = backend.buildPrecompiledHeader(headerRequest, output: temporary)
        guard response.status == 0, FileSystem.isRegularFile(temporary) else {
            unlink(temporary)
            return ("no precompiled header: building one of the leading #include lines failed", "")
        }
        chmod(temporary, 0o600)
        do {
            try AtomicFile.commit(temporary, to: path, relativeTo: AT_FDCWD)
        } catch {
            unlink(temporary)
            return ("no precompiled header: cannot rename it into \(path): \(error)", "")
        }
        return ("built precompiled header \(path) in \(MonotonicClock.milliseconds(since: started)) ms", response.diagnostics)
    }

    /// clang names the file in every error about loading a precompiled header (stale inputs,
    /// another clang version, a damaged file).
    static func mentionsPrecompiledHeader(_ diagnostics: String, path: String) -> Bool {
        diagnostics.contains(path) || diagnostics.contains("precompiled header") || diagnostics.contains("PCH file")
            || diagnostics.contains("AST file")
    }
}

/// Size and modification time of an executable: cheap to read, and different whenever the
/// file is rebuilt or replaced, so that nothing a previous build made is reused by mistake.
public enum ExecutableIdentity {
    public static func of(path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "absent" }
        return "\(st.st_size)-\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)-\(st.st_ino)"
    }

    public static var ofRunningProgram: String { of(path: "/proc/self/exe") }
}
