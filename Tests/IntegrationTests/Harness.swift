import CLibBPF
import Foundation
import Testing
import KprobeSupport
import TestSupport

/// Runs the built `kprobe-run` as a user would and collects what it printed.
enum Tool {
    static let packageRoot = TestInputs.packageRoot

    static var binary: String {
        ProcessInfo.processInfo.environment["KPROBE_RUN_BIN"] ?? packageRoot + "/.build/debug/kprobe-run"
    }

    static func example(_ name: String) -> String { packageRoot + "/bpf-examples/" + name }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var uncaughtSignal: Bool
    }

    /// Runs kprobe-run with `arguments`; while it runs, calls `trigger` every 200 ms so that the
    /// probe has events to see once it is attached. Kills it after `timeout` seconds.
    static func run(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Double = 120,
        trigger: (() -> Void)? = nil
    ) throws -> Result {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        return try run(arguments, completeEnvironment: env, timeout: timeout, interval: 0.2) { _, _ in trigger?() }
    }

    /// Runs kprobe-run in exactly `completeEnvironment`; every `interval` seconds while it runs,
    /// `tick` sees it and its output so far. Kills it after `timeout` seconds.
    static func run(
        _ arguments: [String],
        completeEnvironment: [String: String],
        timeout: Double,
        interval: Double,
        tick: (Process, Collected) -> Void
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        process.environment = completeEnvironment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let collected = Collected()
        out.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData, toError: false) }
        err.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData, toError: true) }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                Thread.sleep(forTimeInterval: 2)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            tick(process, collected)
            Thread.sleep(forTimeInterval: interval)
        }
        process.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        collected.append(out.fileHandleForReading.readDataToEndOfFile(), toError: false)
        collected.append(err.fileHandleForReading.readDataToEndOfFile(), toError: true)
        let (stdout, stderr) = collected.strings
        return Result(
            status: process.terminationStatus,
            stdout: stdout,
            stderr: stderr,
            uncaughtSignal: process.terminationReason == .uncaughtSignal
        )
    }

    /// Output of a child's two pipes, appended from their readability handlers.
    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var out = Data(), err = Data()
        func append(_ data: Data, toError: Bool) {
            lock.lock()
            defer { lock.unlock() }
            if toError { err.append(data) } else { out.append(data) }
        }
        var strings: (String, String) {
            lock.lock()
            defer { lock.unlock() }
            return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }
    }
}

/// Runs a program other than kprobe-run to its end, stdout and stderr together.
func runCollecting(_ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                   directory: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: argv[0])
    process.arguments = Array(argv.dropFirst())
    process.environment = environment
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The kernel's loaded BPF programs, to show that a run leaves none of its own behind.
enum LoadedPrograms {
    static func ids() -> Set<UInt32> {
        var ids: Set<UInt32> = []
        var id: UInt32 = 0
        while bpf_prog_get_next_id(id, &id) == 0 { ids.insert(id) }
        return ids
    }

    /// Ids of the loaded programs called `name` (the kernel keeps 15 characters of a name): a
    /// check that other users of this kernel cannot confuse. Waits a little for programs being
    /// freed (RCU).
    static func named(_ name: String) -> [UInt32] {
        func matching() -> [UInt32] {
            ids().filter { id in
                let fd = bpf_prog_get_fd_by_id(id)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                var info = bpf_prog_info()
                var length = UInt32(MemoryLayout<bpf_prog_info>.size)
                guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0 else { return false }
                let loaded = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                return loaded == String(name.prefix(15))
            }.sorted()
        }
        for _ in 0..<20 {
            if matching().isEmpty { return [] }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return matching()
    }

    /// Program ids loaded during `body` that are still loaded after it.
    static func leftBehind(by body: () throws -> Void) rethrows -> Set<UInt32> {
        let before = ids()
        try body()
        // Programs are freed by the kernel asynchronously (RCU) once their last fd closes.
        for _ in 0..<20 {
            let extra = ids().subtracting(before)
            if extra.isEmpty { return [] }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return ids().subtracting(before)
    }
}

extension Process {
    /// Ends a helper process and reaps it. SIGKILL, because children of the test runner inherit
    /// its blocked SIGTERM, which `terminate()` would send in vain.
    func kill() {
        Glibc.kill(processIdentifier, SIGKILL)
        waitUntilExit()
    }
}

let isRoot = TestInputs.isRoot

/// Suites that load programs into this machine's kernel run one at a time: each checks that its
/// runs leave no program of theirs loaded, and another suite's programs would confuse that.
@Suite(.serialized, .tags(.hostKernel)) struct HostKernel {}

/// Suites that boot the test kernel under QEMU run one at a time: two emulated machines on two
/// cores starve each other past their timeouts.
@Suite(.serialized, .tags(.emulatedKernel)) struct EmulatedKernel {}
