import CClangBPF
import KprobeSupport
import ProbeCompiler
#if canImport(Glibc)
import Glibc
#endif

// kprobe-run-cc: one request on stdin, one response on stdout, then exit. The parent turns a
// crash or an LLVM fatal error (stderr, status 70) into a compile error of its own.

let endpoint = WorkerEndpoint(program: "kprobe-run-cc")

/// NUL-terminated copies of strings, alive until `release`.
struct CStrings {
    var pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) { pointers = strings.map { strdup($0) } }

    func release() { for pointer in pointers { free(pointer) } }
}

/// The header image (`HeaderImage`) as the shim's file table: the shim reads each file from the
/// descriptor when clang opens it.
struct HeaderTreeTable {
    let root: CStrings
    let paths: CStrings
    let files: [clang_bpf_tree_file]

    init(_ image: HeaderImage) {
        let paths = CStrings(image.files.map(\.path))
        root = CStrings([image.root])
        files = zip(paths.pointers, image.files).map { path, file in
            clang_bpf_tree_file(path: path, offset: UInt64(file.offset), length: file.size)
        }
        self.paths = paths
    }

    func release() {
        root.release()
        paths.release()
    }
}

/// The C++ shim, called with the request's strings as C strings.
struct ShimBackend: ClangBackend {
    var version: String { String(cString: clang_bpf_version()) }

    func compile(_ request: CompileRequest, precompiledHeader: String?) -> WorkerProtocol.Response {
        run(request, pch: precompiledHeader) { input, result in clang_bpf_compile(&input, &result) }
    }

    /// Built in a child process: parsing the kernel headers is the largest allocation of a run,
    /// and glibc keeps a freed heap, so the compile that follows would start from that peak. The
    /// child also starts without the worker's code pages mapped (fork copies no page tables of
    /// file mappings), so of LLVM's start-up code only what the build itself runs counts against it.
    func buildPrecompiledHeader(_ request: CompileRequest, output: String) -> WorkerProtocol.Response {
        let channel: DescriptorPair
        do {
            channel = try DescriptorPair.pipe()
        } catch {
            return failed("cannot create a pipe for the precompiled-header build: \(error)")
        }
        let child = fork()
        if child == 0 {
            let response = output.withCString { path in
                run(request, pch: nil) { input, result in clang_bpf_build_pch(&input, path, &result) }
            }
            let written = (try? channel.write.writeAll(WorkerProtocol.encode(response))) != nil
            _exit(written ? 0 : 1)
        }
        guard child > 0 else {
            return failed("cannot fork to build the precompiled header: \(Errno.current)")
        }
        let reply = channel.keepingOurEnd()
        let answer = try? reply.readAll()
        let status = try? ChildProcess.wait(child)
        guard status?.succeeded == true, let answer, let response = try? WorkerProtocol.decodeResponse(answer) else {
            return failed("the precompiled-header build \(status?.description ?? "could not be waited for") (its messages are above)")
        }
        return response
    }

    /// Twice forked, so that the worker answers and exits at once and init reaps the builder; in a
    /// session of its own (a Ctrl-C to kprobe-run does not reach it: a killed build only leaves a
    /// temporary the next build removes), with stdio on /dev/null (kprobe-run reads the worker's
    /// stdout and stderr to their end), under SCHED_IDLE so that it takes only CPU time nothing
    /// else wants.
    func detached(_ work: () -> Void) -> Bool {
        let child = fork()
        if child == 0 {
            _ = setsid()
            if fork() != 0 { _exit(0) }
            let null = open("/dev/null", O_RDWR)
            if null >= 0 {
                for target in Int32(0)...2 { _ = dup2(null, target) }
                if null > 2 { close(null) }
            }
            var parameters = sched_param()
            _ = sched_setscheduler(0, 5 /* SCHED_IDLE */, &parameters)
            work()
            _exit(0)
        }
        guard child > 0, let status = try? ChildProcess.wait(child) else { return false }
        return status.succeeded
    }

    private func failed(_ why: String) -> WorkerProtocol.Response {
        WorkerProtocol.Response(status: Int32(CLANG_BPF_COMPILE_ERROR), elf: [], diagnostics: why + "\n")
    }

    private func run(_ request: CompileRequest, pch: String?,
                     _ body: (inout clang_bpf_input, inout clang_bpf_result) -> Int32) -> WorkerProtocol.Response {
        let arguments = CStrings(request.arguments)
        let paths = CStrings(request.virtualFiles.map(\.path))
        let contents = CStrings(request.virtualFiles.map(\.contents))
        let pchPath = CStrings(pch.map { [$0] } ?? [])
        let cpu = CStrings(request.cpu.map { [$0.rawValue] } ?? [])
        defer {
            arguments.release()
            paths.release()
            contents.release()
            pchPath.release()
            cpu.release()
        }
        let tree = request.headerImage.map(HeaderTreeTable.init)
        defer { tree?.release() }
        let treeFiles = tree?.files ?? []
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
                                        pch_path: pchPath.pointers.first.flatMap { $0 }.map { UnsafePointer($0) },
                                        cpu: cpu.pointers.first.flatMap { $0 }.map { UnsafePointer($0) },
                                        write_metadata: writeEventMetadata,
                                        tree_root: tree?.root.pointers.first.flatMap { $0 }.map { UnsafePointer($0) },
                                        tree_fd: request.headerImage?.descriptor ?? -1,
                                        tree_files: nil, tree_file_count: 0)
                                    return treeFiles.withUnsafeBufferPointer { treePointers in
                                        input.tree_files = treePointers.baseAddress
                                        input.tree_file_count = treePointers.count
                                        return body(&input, &result)
                                    }
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

/// The shim found which struct each perf or ring buffer map carries and how the probe fills
/// its maps: those tables, as the `.kprobe_run.meta` JSON the runtime reads.
private func writeEventMetadata(_ tables: UnsafePointer<UnsafePointer<CChar>?>?, _ keys: UnsafePointer<UnsafePointer<CChar>?>?,
                                _ values: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int) -> UnsafeMutablePointer<CChar>? {
    guard let tables, let keys, let values else { return nil }
    var metadata = ProbeMetadata()
    for index in 0..<count {
        guard let table = tables[index], let key = keys[index], let value = values[index] else { continue }
        metadata.set(table: String(cString: table), key: String(cString: key), value: String(cString: value))
    }
    return strdup(metadata.json())
}

// `kprobe-run --version` asks the worker which clang/LLVM it carries.
if CommandLine.arguments.dropFirst().first == "--version" {
    print(String(cString: clang_bpf_version()))
    exit(0)
}

let request = endpoint.readRequest()
guard request.dialect == .libbpf else {
    endpoint.fail("got a \(request.dialect.rawValue) program; kprobe-run-bcc rewrites those into libbpf C first")
}
clang_bpf_initialize()
endpoint.write(WorkerProtocol.encode(PrecompiledHeaders.compile(request, backend: ShimBackend())))
exit(0)
