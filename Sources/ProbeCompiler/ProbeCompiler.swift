import KprobeSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Compiles probes in a separate `kprobe-run-cc` process. LLVM aborts the whole process on a
/// fatal error, and only the worker links it, so a run whose object is cached never loads it.
public struct ProbeCompiler: Sendable {
    /// The worker executable, once resolved.
    public let workerPath: String
    private let explanation: String

    /// `workerPath` nil: `$KPROBE_RUN_CC`, else `kprobe-run-cc` beside the running executable.
    public init(workerPath: String? = nil) {
        if let workerPath {
            self.workerPath = workerPath
            explanation = "the path kprobe-run was given"
        } else if let fromEnvironment = Environment.get("KPROBE_RUN_CC"), !fromEnvironment.isEmpty {
            self.workerPath = fromEnvironment
            explanation = "from KPROBE_RUN_CC"
        } else {
            let directory = FileSystem.executableDirectory() ?? "."
            self.workerPath = directory + "/kprobe-run-cc"
            explanation = "looked beside the running executable, in \(directory)"
        }
    }

    /// Compiles through `cache`: a hit returns the stored object without starting the worker;
    /// a miss compiles (with a precompiled header where the probe allows one) and stores the
    /// result. A cache that cannot be read or written only costs the time; it never fails the compile.
    public func compile(_ request: CompileRequest, cache: CompileCache) throws(CompileError) -> CompiledObject {
        let workingDirectory = Self.workingDirectory()
        let key = cache.key(for: request, workerIdentity: ExecutableIdentity.of(path: workerPath), workingDirectory: workingDirectory)
        if let hit = cache.lookup(key: key) { return hit }
        var request = request
        request.precompiledHeaders = cache.precompiledHeaderSettings()
        var compiled = try compile(request)
        var virtualPaths = Set(request.virtualFiles.map(\.path))
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
        guard FileSystem.isRegularFile(workerPath), access(workerPath, X_OK) == 0 else {
            throw CompileError(
                "the compiler worker kprobe-run-cc was not found at \(workerPath) (\(explanation)); "
                    + "install it next to kprobe-run or set KPROBE_RUN_CC to its path")
        }
        let outcome = try WorkerProcess.run(path: workerPath, input: WorkerProtocol.encode(request))
        guard case .exited(0) = outcome.termination else {
            throw workerFailure(outcome.termination.description, stderr: outcome.stderr)
        }
        let response: WorkerProtocol.Response
        do {
            response = try WorkerProtocol.decodeResponse(outcome.stdout)
        } catch {
            throw workerFailure("wrote a malformed response (\(error))", stderr: outcome.stderr)
        }
        guard response.status == 0 else {
            let text = response.diagnostics.isEmpty ? "compilation failed without diagnostics (code \(response.status))" : response.diagnostics
            throw CompileError(text)
        }
        return CompiledObject(elf: response.elf, diagnostics: response.diagnostics, dependencies: response.dependencies,
                              notes: response.notes)
    }

    private static func workingDirectory() -> String {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let found = buffer.withUnsafeMutableBufferPointer { getcwd(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) != nil }
        guard found, let end = buffer.firstIndex(of: 0) else { return "." }
        return String(decoding: buffer[..<end], as: UTF8.self)
    }

    private func workerFailure(_ what: String, stderr: [UInt8]) -> CompileError {
        var message = "the compiler worker \(workerPath) failed: it \(what)"
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
