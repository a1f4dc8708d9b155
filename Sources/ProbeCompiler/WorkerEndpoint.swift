import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// The workers' side of WorkerProtocol (kprobe-run-cc, kprobe-run-bcc): one request from stdin,
/// one answer to stdout. Anything else is a message on stderr and status 2, which the parent
/// reports with that message.
public struct WorkerEndpoint: Sendable {
    public let program: String

    public init(program: String) {
        self.program = program
    }

    public func fail(_ message: String) -> Never {
        try? FileSystem.writeAll(Array("\(program): \(message)\n".utf8), to: 2)
        exit(2)
    }

    public func readRequest() -> CompileRequest {
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

    public func write(_ answer: [UInt8]) {
        do {
            try FileSystem.writeAll(answer, to: 1)
        } catch {
            fail("cannot write the response: \(error)")
        }
    }
}
