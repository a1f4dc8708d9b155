import Testing
import KprobeSupport
@testable import ProbeCompiler

@Suite struct ProtocolTests {
    @Test func requestRoundTrip() throws {
        let request = CompileRequest(
            sourcePath: "bpf-examples/hello.c", source: "int x; /* ünïcödé */\n", frontendTriple: "x86_64-linux-gnu",
            arguments: ["-nostdinc", "-I/a b", "-DX=1", ""],
            virtualFiles: [VirtualFile(path: "/v/vmlinux.h", contents: String(repeating: "struct s { int a; };\n", count: 1000)),
                           VirtualFile(path: "/v/empty.h", contents: "")])
        #expect(try WorkerProtocol.decodeRequest(WorkerProtocol.encode(request)) == request)
        var withPCH = request
        withPCH.precompiledHeaders = PrecompiledHeaderSettings(directory: "/var/cache/kprobe-run/pch", headerIdentity: "6.1-abc")
        #expect(try WorkerProtocol.decodeRequest(WorkerProtocol.encode(withPCH)) == withPCH)
        var withCPU = request
        withCPU.cpu = .v3
        #expect(try WorkerProtocol.decodeRequest(WorkerProtocol.encode(withCPU)) == withCPU)
        var withImage = request
        withImage.headerImage = HeaderImage(root: "/c/headers/6.1-abc", descriptor: HeaderImage.workerDescriptor, size: 1 << 33,
                                            files: [.init(path: "include/a.h", offset: 0, size: 5), .init(path: "b.h", offset: 1 << 32, size: 7)],
                                            lockPath: "/c/headers/.lock")
        #expect(try WorkerProtocol.decodeRequest(WorkerProtocol.encode(withImage)) == withImage)
        // A file outside the image is refused rather than mapped.
        var outside = withImage
        outside.headerImage!.files.append(.init(path: "c.h", offset: (1 << 33) - 2, size: 3))
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeRequest(WorkerProtocol.encode(outside)) }
    }

    @Test func responseRoundTrip() throws {
        let response = WorkerProtocol.Response(status: 1, elf: [0x7f, 0x45, 0x4c, 0x46, 0, 255], diagnostics: "probe.c:1:2: error: x\n")
        #expect(try WorkerProtocol.decodeResponse(WorkerProtocol.encode(response)) == response)
        let negative = WorkerProtocol.Response(status: -3, elf: [], diagnostics: "")
        #expect(try WorkerProtocol.decodeResponse(WorkerProtocol.encode(negative)) == negative)
        let full = WorkerProtocol.Response(status: 0, elf: [1], diagnostics: "", dependencies: ["/a.h", "b.h"], notes: ["loaded x"])
        #expect(try WorkerProtocol.decodeResponse(WorkerProtocol.encode(full)) == full)
    }

    /// kprobe-run-bcc answers with the rewritten program as a request, or with a failed response.
    @Test func rewriteAnswerRoundTrip() throws {
        let rewritten = CompileRequest(sourcePath: "tool.c", source: "SEC(\"kprobe/x\") int f(void *ctx) { return 0; }\n",
                                       frontendTriple: "x86_64-linux-gnu", arguments: ["-I/kprobe-run/include"])
        let failed = WorkerProtocol.Response(status: 1, elf: [], diagnostics: "tool.c:3:1: error: x\n")
        for answer in [WorkerProtocol.RewriteAnswer.rewritten(rewritten), .failed(failed)] {
            #expect(try WorkerProtocol.decodeRewriteAnswer(WorkerProtocol.encode(answer)) == answer)
        }
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeRewriteAnswer(Array("garbage".utf8)) }
    }

    @Test func rejectsDamagedMessages() {
        let bytes = WorkerProtocol.encode(CompileRequest(sourcePath: "p.c", source: "int x;", frontendTriple: "bpf", arguments: ["-DA"]))
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeRequest(Array(bytes.dropLast())) }
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeRequest(bytes + [0]) }
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeResponse(bytes) }
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeResponse(Array("garbage\n".utf8)) }
        #expect(throws: WorkerProtocol.MalformedMessage.self) { try WorkerProtocol.decodeResponse([]) }
    }

    @Test func libbpfHeadersAreVirtual() throws {
        let headers = try LibbpfHeaders.load()
        #expect(headers.includeArgument == "-I" + LibbpfHeaders.virtualDirectory)
        let paths = headers.virtualFiles.map(\.path)
        #expect(paths.contains(LibbpfHeaders.virtualDirectory + "/bpf/bpf_helpers.h"))
        #expect(paths.contains(LibbpfHeaders.virtualDirectory + "/bpf/bpf_helper_defs.h"))
        #expect(headers.virtualFiles.allSatisfy { !$0.contents.isEmpty })
    }

    @Test func missingLibbpfSaysWhatToInstall() {
        #expect {
            try LibbpfHeaders.load(from: "/nonexistent/bpf")
        } throws: { error in
            let error = error as! CompileError
            return error.kind == .compile && error.message.contains("libbpf-dev") && error.message.contains("/nonexistent/bpf/bpf_helpers.h")
        }
    }
}
