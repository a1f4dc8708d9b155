import Testing
import KprobeSupport
@testable import ProbeCompiler
import TestSupport

/// Whatever the worker does, kprobe-run gets a CompileError rather than dying with it.
@Suite struct WorkerFailureTests {
    let request = CompileRequest(sourcePath: "probe.c", source: "int x;\n", frontendTriple: "bpf", arguments: [])

    func failure(_ compiler: WorkerCompiler, _ request: CompileRequest? = nil) -> CompileError? {
        do {
            _ = try compiler.compile(request ?? self.request)
            return nil
        } catch {
            return error
        }
    }

    @Test func missingWorkerSaysWhereItLooked() throws {
        let error = try #require(failure(WorkerCompiler(workerPath: "/nonexistent/kprobe-run-cc")))
        #expect(error.kind == .compile)
        #expect(error.message.contains("/nonexistent/kprobe-run-cc"))
        #expect(error.message.contains("KPROBE_RUN_CC"))
    }

    @Test func crashingWorker() throws {
        let scratch = try ScratchDirectory()
        let worker = try scratch.script("segv", "echo 'about to crash' >&2\nkill -SEGV $$")
        let error = try #require(failure(WorkerCompiler(workerPath: worker)))
        #expect(error.message.contains("compiler worker"))
        #expect(error.message.contains("signal 11"))
        #expect(error.message.contains("about to crash"))
    }

    @Test func garbageResponse() throws {
        let scratch = try ScratchDirectory()
        let worker = try scratch.script("garbage", "cat >/dev/null\necho 'this is not a response'")
        let error = try #require(failure(WorkerCompiler(workerPath: worker)))
        #expect(error.message.contains("malformed response"))
    }

    @Test func fatalErrorExit() throws {
        let scratch = try ScratchDirectory()
        let worker = try scratch.script("fatal", "cat >/dev/null\necho 'kprobe-run-cc: LLVM fatal error: something broke' >&2\nexit 70")
        let error = try #require(failure(WorkerCompiler(workerPath: worker)))
        #expect(error.message.contains("exited with status 70"))
        #expect(error.message.contains("LLVM fatal error: something broke"))
    }

    /// A worker that exits without reading a large request must not leave the parent blocked
    /// in write() or killed by SIGPIPE.
    @Test func workerThatIgnoresItsInput() throws {
        let scratch = try ScratchDirectory()
        let worker = try scratch.script("early", "exit 3")
        var big = request
        big.virtualFiles = [VirtualFile(path: "/v/big.h", contents: String(repeating: "x", count: 8 << 20))]
        let error = try #require(failure(WorkerCompiler(workerPath: worker), big))
        #expect(error.message.contains("exited with status 3"))
    }

    /// Large stdout and stderr at once, while the request is still being written.
    @Test func chattyWorkerDoesNotDeadlock() throws {
        let scratch = try ScratchDirectory()
        let worker = try scratch.script("chatty", "head -c 3000000 /dev/zero >&2\nhead -c 3000000 /dev/zero\ncat >/dev/null\nexit 1")
        var big = request
        big.virtualFiles = [VirtualFile(path: "/v/big.h", contents: String(repeating: "x", count: 4 << 20))]
        let error = try #require(failure(WorkerCompiler(workerPath: worker), big))
        #expect(error.message.contains("exited with status 1"))
    }
}
