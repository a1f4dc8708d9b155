import KprobeSupport

/// One run of a worker program (kprobe-run-cc, kprobe-run-bcc): the request on its stdin, its
/// stdout collected, and the end of its stderr kept for a message.
enum WorkerProcess {
    /// Only the end of stderr is kept: it is for a message, and a crashing LLVM can print a lot.
    static let stderrLimit = 16 * 1024

    /// `image`: the header image's memfd, given to the worker as `HeaderImage.workerDescriptor`.
    static func run(path: String, input: [UInt8], image: HeaderImage? = nil) throws(CompileError) -> ChildProcess.Outcome {
        do {
            return try ChildProcess.run([path], input: input, stdout: .all, stderr: .tail(stderrLimit),
                                        extra: image.map { [($0.descriptor, HeaderImage.workerDescriptor)] } ?? [])
        } catch {
            throw CompileError("cannot run the compiler worker \(path): \(error)")
        }
    }
}
