import CClangBPF
import KprobeSupport
import ProbeCompiler
import ProbeFrontend
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// kprobe-run-cc: one request on stdin, one response on stdout, then exit. The parent turns a
// crash or an LLVM fatal error (stderr, status 70) into a compile error of its own.

func fail(_ message: String) -> Never {
    try? FileSystem.writeAll(Array("kprobe-run-cc: \(message)\n".utf8), to: 2)
    exit(2)
}

/// NUL-terminated copies of strings, alive until `release`.
struct CStrings {
    var pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) { pointers = strings.map { strdup($0) } }

    func release() { for pointer in pointers { free(pointer) } }
}

/// The C++ shim, called with the request's strings as C strings.
struct ShimBackend: ClangBackend {
    var version: String { String(cString: clang_bpf_version()) }

    func compile(_ request: CompileRequest, precompiledHeader: String?) -> WorkerProtocol.Response {
        run(request, pch: precompiledHeader) { input, result in clang_bpf_compile(&input, &result) }
    }

    func buildPrecompiledHeader(_ request: CompileRequest, output: String) -> WorkerProtocol.Response {
        output.withCString { path in
            run(request, pch: nil) { input, result in clang_bpf_build_pch(&input, path, &result) }
        }
    }

    private func run(_ request: CompileRequest, pch: String?,
                     _ body: (inout clang_bpf_input, inout clang_bpf_result) -> Int32) -> WorkerProtocol.Response {
        let arguments = CStrings(request.arguments)
        let paths = CStrings(request.virtualFiles.map(\.path))
        let contents = CStrings(request.virtualFiles.map(\.contents))
        let pchPath = CStrings(pch.map { [$0] } ?? [])
        defer {
            arguments.release()
            paths.release()
            contents.release()
            pchPath.release()
        }
        var files: [clang_bpf_file] = []
        for index in request.virtualFiles.indices {
            files.append(clang_bpf_file(path: paths.pointers[index], contents: contents.pointers[index], length: strlen(contents.pointers[index]!)))
        }
        var source = request.source
        var result = clang_bpf_result()
        let status: Int32 = source.withUTF8 { sourceBytes in
            request.sourcePath.withCString { sourceName in
                request.frontendTriple.withCString { triple in
                    arguments.pointers.withUnsafeBufferPointer { argumentPointers in
                        files.withUnsafeBufferPointer { filePointers in
                            argumentPointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { constArguments in
                                sourceBytes.withMemoryRebound(to: CChar.self) { sourceChars in
                                    var input = clang_bpf_input(
                                        source: sourceChars.baseAddress, source_length: sourceChars.count,
                                        source_name: sourceName, triple: triple,
                                        arguments: constArguments.baseAddress, argument_count: constArguments.count,
                                        files: filePointers.baseAddress, file_count: filePointers.count,
                                        pch_path: pchPath.pointers.first.flatMap { $0 }.map { UnsafePointer($0) })
                                    return body(&input, &result)
                                }
                            }
                        }
                    }
                }
            }
        }
        defer { clang_bpf_result_dispose(&result) }
        let elf = result.object.map { Array(UnsafeBufferPointer(start: $0, count: result.object_size)) } ?? []
        let diagnostics = result.diagnostics.map { String(cString: $0) } ?? ""
        var dependencies: [String] = []
        if let list = result.dependencies {
            let bytes = UnsafeRawBufferPointer(start: list, count: result.dependencies_size)
            dependencies = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
        return WorkerProtocol.Response(status: status, elf: elf, diagnostics: diagnostics, dependencies: dependencies)
    }
}

func readRequest() -> CompileRequest {
    let input: [UInt8]
    do {
        input = try FileSystem.readAll(0)
    } catch {
        fail("cannot read the request: \(error)")
    }
    do {
        return try WorkerProtocol.decodeRequest(input)
    } catch {
        fail("malformed request (\(error)); this program is run by kprobe-run, not by hand")
    }
}

func writeResponse(_ response: WorkerProtocol.Response) {
    do {
        try FileSystem.writeAll(WorkerProtocol.encode(response), to: 1)
    } catch {
        fail("cannot write the response: \(error)")
    }
}

/// A BCC program becomes libbpf C before anything else sees it, so that the precompiled-header
/// decision and the compile both work on the source clang will really compile.
func rewritten(_ request: CompileRequest) -> Result<CompileRequest, Failure> {
    guard request.dialect == .bcc else { return .success(request) }
    do {
        let rewrite = try BCCFrontend.rewrite(
            source: request.source, path: request.sourcePath, triple: request.frontendTriple,
            arguments: request.arguments, virtualFiles: request.virtualFiles, syscallPrefix: request.syscallPrefix)
        var compiled = request
        compiled.source = rewrite.source
        compiled.arguments += rewrite.arguments
        compiled.virtualFiles += rewrite.virtualFiles
        compiled.dialect = .libbpf
        return .success(compiled)
    } catch {
        return .failure(error)
    }
}

let request = readRequest()
clang_bpf_initialize()
switch rewritten(request) {
case .success(let compilable):
    writeResponse(PrecompiledHeaders.compile(compilable, backend: ShimBackend()))
case .failure(let failure):
    writeResponse(WorkerProtocol.Response(status: Int32(CLANG_BPF_COMPILE_ERROR), elf: [], diagnostics: failure.message + "\n"))
}
exit(0)
