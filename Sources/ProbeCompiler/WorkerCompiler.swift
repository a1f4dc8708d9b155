import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// Compiles probes in a separate `kprobe-run-cc` process. LLVM aborts the whole process on a
/// fatal error, and only the worker links it, so a run whose object is cached never loads it.
/// BCC programs are first rewritten into libbpf C by `kprobe-run-bcc`, a process of its own:
/// it reads the program through libclang, whose shared LLVM must not meet the worker's static one.
public struct WorkerCompiler: Sendable {
    /// The worker executable, once resolved.
    public let workerPath: String
    /// The BCC rewriter: `kprobe-run-bcc` in the worker's directory.
    public let rewriterPath: String
    private let explanation: String

    /// `workerPath` nil: `$KPROBE_RUN_CC`, else `kprobe-run-cc` beside the running executable
    /// (a build tree), else in `../libexec/kprobe-run/` from it (an installed kprobe-run).
    public init(workerPath: String? = nil) {
        if let workerPath {
            self.workerPath = workerPath
            explanation = "the path kprobe-run was given"
        } else if let fromEnvironment = Environment.get("KPROBE_RUN_CC"), !fromEnvironment.isEmpty {
            self.workerPath = fromEnvironment
            explanation = "from KPROBE_RUN_CC"
        } else {
            let directory = FileSystem.executableDirectory() ?? "."
            let candidates = Self.installedLocations(besideExecutableIn: directory).map { $0 + "/kprobe-run-cc" }
            self.workerPath = candidates.first { FileSystem.isRegularFile($0) } ?? candidates[0]
            explanation = "looked in " + candidates.map(FileSystem.directory(of:)).joined(separator: " and ")
        }
        rewriterPath = FileSystem.directory(of: self.workerPath) + "/kprobe-run-bcc"
    }

    /// Where the workers sit relative to kprobe-run's directory, in the order they are looked for:
    /// beside it, then `PREFIX/libexec/kprobe-run` for kprobe-run in `PREFIX/bin` (`make install`).
    private static func installedLocations(besideExecutableIn directory: String) -> [String] {
        [directory, FileSystem.directory(of: directory) + "/libexec/kprobe-run"]
    }

    /// The compiler's version as the worker reports it ("Debian clang version 14.0.6"), or nil
    /// when the worker is missing or does not answer.
    public func compilerVersion() -> String? {
        guard let answer = try? ChildProcess.run([workerPath, "--version"], stdout: .head(4096)),
              answer.status == .exited(0) else { return nil }
        let text = String(String(decoding: answer.stdout, as: UTF8.self).trimmingSpaces)
        return text.isEmpty ? nil : text
    }

    /// Compiles through `cache`: a hit returns the stored object without starting the worker;
    /// a miss compiles (with a precompiled header where the probe allows one) and stores the
    /// result. A cache that cannot be read or written only costs the time; it never fails the compile.
    public func compile(_ request: CompileRequest, cache: CompileCache) throws(CompileError) -> CompiledObject {
        let workingDirectory = Self.workingDirectory()
        var workerIdentity = ExecutableIdentity.of(path: workerPath)
        if request.dialect == .bcc { workerIdentity += "+" + ExecutableIdentity.of(path: rewriterPath) }
        let key = cache.key(for: request, workerIdentity: workerIdentity, workingDirectory: workingDirectory)
        if let hit = cache.lookup(key: key) { return hit }
        var request = request
        request.precompiledHeaders = cache.precompiledHeaderSettings()
        let compilable = try libbpfRequest(for: request)
        var compiled = try compileLibbpf(compilable)
        // The rewrite of a BCC program adds virtual files (its prelude) that the compile read.
        var virtualPaths = Set(compilable.virtualFiles.map(\.path))
        virtualPaths.insert(request.sourcePath)
        do {
            try cache.store(compiled, key: key, virtualPaths: virtualPaths, workingDirectory: workingDirectory)
            compiled.notes.append("stored in the compile cache as \(key)")
        } catch {
            compiled.notes.append("not stored in the compile cache: \(error.message)")
        }
        return compiled
    }

    public func compile(_ request: CompileRequest) throws(CompileError) -> CompiledObject {
        try compileLibbpf(try libbpfRequest(for: request))
    }

    private func libbpfRequest(for request: CompileRequest) throws(CompileError) -> CompileRequest {
        try requireExecutable(workerPath, name: "the compiler worker kprobe-run-cc", where: explanation)
        return request.dialect == .bcc ? try rewrite(request) : request
    }

    private func compileLibbpf(_ compilable: CompileRequest) throws(CompileError) -> CompiledObject {
        let response = try exchange(workerPath, compilable, WorkerProtocol.decodeResponse)
        guard response.status == 0 else { throw Self.failure(response) }
        return CompiledObject(elf: response.elf, diagnostics: response.diagnostics, dependencies: response.dependencies,
                              notes: response.notes)
    }

    /// The libbpf C that `kprobe-run-bcc` makes of a BCC program, as a request for the worker.
    private func rewrite(_ request: CompileRequest) throws(CompileError) -> CompileRequest {
        try requireExecutable(rewriterPath, name: "the BCC rewriter kprobe-run-bcc", where: "it belongs beside kprobe-run-cc")
        switch try exchange(rewriterPath, request, WorkerProtocol.decodeRewriteAnswer) {
        case .rewritten(let rewritten):
            return rewritten
        case .failed(let response):
            throw Self.failure(response)
        }
    }

    /// Runs one of the worker programs on `request`; a crash, a failing exit or an answer that
    /// does not decode becomes a CompileError naming the program, with the end of its stderr.
    private func exchange<Answer>(_ path: String, _ request: CompileRequest,
                                  _ decode: ([UInt8]) throws(WorkerProtocol.MalformedMessage) -> Answer) throws(CompileError) -> Answer {
        let outcome = try WorkerProcess.run(path: path, input: WorkerProtocol.encode(request), image: request.headerImage)
        guard outcome.status.succeeded else {
            throw workerFailure(path, outcome.status.description, stderr: outcome.stderr)
        }
        do {
            return try decode(outcome.stdout)
        } catch {
            throw workerFailure(path, "wrote a malformed response (\(error))", stderr: outcome.stderr)
        }
    }

    private func requireExecutable(_ path: String, name: String, where explanation: String) throws(CompileError) {
        guard FileSystem.isRegularFile(path), access(path, X_OK) == 0 else {
            throw CompileError("\(name) was not found at \(path) (\(explanation)); install it next to kprobe-run or in ../libexec/kprobe-run/ from it, or set KPROBE_RUN_CC to the path of kprobe-run-cc")
        }
    }

    private static func failure(_ response: WorkerProtocol.Response) -> CompileError {
        CompileError(response.diagnostics.isEmpty ? "compilation failed without diagnostics (code \(response.status))" : response.diagnostics)
    }

    private static func workingDirectory() -> String {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let found = buffer.withUnsafeMutableBufferPointer { getcwd(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) != nil }
        guard found, let end = buffer.firstIndex(of: 0) else { return "." }
        return String(decoding: buffer[..<end], as: UTF8.self)
    }

    private func workerFailure(_ path: String, _ what: String, stderr: [UInt8]) -> CompileError {
        var message = "the compiler worker \(path) failed: it \(what)"
        let tail = String(decoding: stderr, as: UTF8.self).trimmingTrailingWhitespace
        if !tail.isEmpty { message += "; its last output:\n" + tail }
        return CompileError(message)
    }
}

extension String {
    fileprivate var trimmingTrailingWhitespace: String {
        var text = Substring(self)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
