import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// Issue 5's must-show, against this machine's kernel: JSON lines, histograms (also per
    /// interval), symbolized and folded stacks, and `-c` sessions.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct OutputTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        static func jsonObjects(_ stdout: String) -> [[String: Any]] {
            stdout.split(separator: "\n").map { line in
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8))
                return object as? [String: Any] ?? ["unparsable": String(line)]
            }
        }

        @Test func opensnoopJSONLinesAreTyped() throws {
            let marker = "/tmp/kprobe-run-json-\(UUID().uuidString)"
            let result = try Tool.run(["--format", "json", Tool.example("opensnoop.c"), "-d", "3"], environment: environment) {
                _ = open(marker, O_RDONLY)
            }
            #expect(result.status == 0, "\(result.stderr)")
            let objects = Self.jsonObjects(result.stdout)
            #expect(!objects.isEmpty)
            for object in objects {
                #expect(object["unparsable"] == nil, "not JSON: \(object)")
                #expect(object["type"] is String)
            }
            let events = objects.filter { $0["type"] as? String == "event" }
            let mine = events.compactMap { $0["data"] as? [String: Any] }.filter { $0["filename"] as? String == marker }
            #expect(!mine.isEmpty, "no event for \(marker)")
            if let first = mine.first {
                #expect(first["pid"] is NSNumber && !(first["pid"] is String))
                #expect(first["comm"] is String)
            }
        }

        @Test func histogramPrintsBucketsAndEveryInterval() throws {
            let once = try Tool.run([Tool.example("readhist.c"), "-d", "2"], environment: environment) {
                _ = try? Data(contentsOf: URL(fileURLWithPath: "/etc/passwd"))
            }
            #expect(once.status == 0, "\(once.stderr)")
            let lines = once.stdout.split(separator: "\n")
            // libbpf-tools' print_log2_hist header (one space less than BCC's).
            #expect(lines.contains { $0.hasSuffix(": count    distribution") }, "\(once.stdout)")
            let rows = lines.filter { $0.wholeMatch(of: /\s+\d+ -> \d+\s+: \d+\s+\|[* ]{40}\|/) != nil }
            #expect(!rows.isEmpty && rows.contains { $0.contains("*") }, "\(once.stdout)")

            let intervals = try Tool.run([Tool.example("readhist.c"), "-i", "1", "-d", "3"], environment: environment) {
                _ = try? Data(contentsOf: URL(fileURLWithPath: "/etc/passwd"))
            }
            #expect(intervals.status == 0, "\(intervals.stderr)")
            let intervalLines = intervals.stdout.split(separator: "\n")
            #expect(intervalLines.filter { $0 == "read_bytes:" }.count == 3, "\(intervals.stdout)")
            #expect(intervalLines.filter { $0.wholeMatch(of: /\d\d:\d\d:\d\d/) != nil }.count == 3)
        }

        /// A process that spends its time in read/write syscalls (kernel frames) from libc
        /// (user frames), alive until the maps have been printed.
        static func busyProcess() throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/dd")
            process.arguments = ["if=/dev/zero", "of=/dev/null", "bs=1"]
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }

        @Test func profileSymbolizesKernelAndUserFrames() throws {
            let busy = try Self.busyProcess()
            defer { busy.kill() }
            let result = try Tool.run([Tool.example("profile.c"), "-d", "3"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            var section = "", kernel: [String] = [], user: [String] = []
            for line in result.stdout.split(separator: "\n").map(String.init) {
                if line.hasPrefix("    ") && line.hasSuffix(":") && !line.hasPrefix("      ") {
                    section = line.trimmingCharacters(in: .whitespaces)
                } else if line.hasPrefix("      ") {
                    let frame = line.trimmingCharacters(in: .whitespaces)
                    guard !frame.hasPrefix("0x"), !frame.hasPrefix("[") else { continue }
                    if section == "kern_stack:" { kernel.append(frame) }
                    if section == "user_stack:" { user.append(frame) }
                }
            }
            #expect(kernel.contains { $0.hasPrefix("do_syscall_64") || $0.hasPrefix("entry_SYSCALL") }, "\(result.stdout.prefix(3000))")
            #expect(!user.isEmpty, "no symbolized user frame in: \(result.stdout.prefix(3000))")
        }

        @Test func foldedStacksHaveFlamegraphFormat() throws {
            let busy = try Self.busyProcess()
            defer { busy.kill() }
            let result = try Tool.run([Tool.example("profile.c"), "-d", "2", "--format", "folded"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n")
            #expect(!lines.isEmpty)
            for line in lines {
                #expect(line.wholeMatch(of: /[^ ]+( [0-9]+)/) != nil, "not a folded line: \(line)")
            }
            #expect(lines.contains { $0.hasPrefix("dd;") && $0.split(separator: ";").count >= 3 }, "\(result.stdout.prefix(2000))")
        }

        @Test func commandSessionFollowsOnlyTheCommand() throws {
            let started = Date()
            let result = try Tool.run(["--format", "json", Tool.example("pidopens.c"), "-c", "ls /"], environment: environment, timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(Date().timeIntervalSince(started) < 30, "kprobe-run did not stop when ls exited")
            let objects = Self.jsonObjects(result.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.joined(separator: "\n"))
            let events = objects.filter { $0["type"] as? String == "event" }.compactMap { $0["data"] as? [String: Any] }
            #expect(!events.isEmpty, "\(result.stdout)")
            let pids = Set(events.compactMap { ($0["pid"] as? NSNumber)?.intValue })
            #expect(pids.count == 1, "events of several processes: \(pids)")
            #expect(events.allSatisfy { $0["comm"] as? String == "ls" }, "\(events)")
            #expect(events.contains { $0["filename"] as? String == "/" })
            let last = objects.last
            #expect(last?["type"] as? String == "exit")
            #expect((last?["status"] as? NSNumber)?.intValue == 0)
        }
    }
}
