import ProbeCompiler
import BCCRewriter
#if canImport(Glibc)
import Glibc
#endif

// kprobe-run-bcc: one BCC program on stdin, the libbpf C made of it on stdout (as a request for
// kprobe-run-cc), then exit. It reads the program through libclang, so it runs apart from the
// worker: libclang brings a shared LLVM, the worker has its own, static.

let endpoint = WorkerEndpoint(program: "kprobe-run-bcc")
let request = endpoint.readRequest()
guard request.dialect == .bcc else {
    endpoint.fail("got a \(request.dialect.rawValue) program; only BCC programs are rewritten")
}
do {
    let rewrite = try BCCFrontend.rewrite(
        source: request.source, path: request.sourcePath, triple: request.frontendTriple,
        arguments: request.arguments, virtualFiles: request.virtualFiles, syscallPrefix: request.syscallPrefix)
    var compilable = request
    compilable.source = rewrite.source
    compilable.arguments += rewrite.arguments
    compilable.virtualFiles += rewrite.virtualFiles
    compilable.dialect = .libbpf
    endpoint.write(WorkerProtocol.encode(.rewritten(compilable)))
} catch {
    // The same status as a compile error of the worker: a program BCC's rules cannot take.
    let response = WorkerProtocol.Response(status: 1, elf: [], diagnostics: error.message + "\n")
    endpoint.write(WorkerProtocol.encode(.failed(response)))
}
exit(0)
