import Glibc
import KprobeSupport

/// Reads trace_pipe without blocking and prints the bpf_printk lines in it.
struct TracePipeReader {
    let fd: Int32
    let reporter: Reporter
    private var partial: [UInt8] = []
    private(set) var lost: UInt64 = 0

    init(fd: Int32, reporter: Reporter) {
        self.fd = fd
        self.reporter = reporter
    }

    /// Throws away what is queued now: output of earlier runs, not of this session.
    mutating func discardPending() -> Int {
        var count = 0
        for _ in readAvailable() { count += 1 }
        partial.removeAll()
        return count
    }

    mutating func drain() {
        for line in readAvailable() {
            if line.hasSuffix(" EVENTS]"), line.contains("[LOST ") {
                let number = line.split(separator: " ").compactMap { UInt64($0) }.first ?? 0
                lost &+= number
                continue
            }
            guard let printk = PrintkLine(parsing: line[...]) else { continue }
            reporter.printk(printk)
        }
    }

    private mutating func readAvailable() -> [String] {
        var lines: [String] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { buffer in retryOnInterrupt { read(fd, buffer.baseAddress, buffer.count) } }
            guard n > 0 else { break }
            partial.append(contentsOf: chunk[0..<n])
            while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(String(decoding: partial[..<newline], as: UTF8.self))
                partial.removeSubrange(...newline)
            }
        }
        return lines
    }
}
