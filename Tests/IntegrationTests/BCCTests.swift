import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// BCC-dialect programs, unchanged: BCC's own tools (../shared/bcc-corpus) through the verifier,
    /// and bpf-examples/bcc run for real. This kernel has no headers of its own, so the test kernel's
    /// kheaders archive stands in; tracepoint layouts come from this kernel's tracefs.
    @Suite(.serialized, .enabled(if: isRoot && FileManager.default.fileExists(atPath: BCC.headers), "needs root and ../shared/testkernel"))
    struct BCCTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        @Test(arguments: BCC.corpus)
        func corpusProgramCompilesAndPassesTheVerifier(_ program: String) throws {
            let scratch = try ScratchDirectory()
            let result = try Tool.run(
                ["compile", "--verify", "--dialect", "bcc", "--headers", BCC.headers, program, "-o", scratch.path + "/out.o"],
                environment: environment)
            #expect(result.status == 0, "\(program): \(result.stderr)")
            #expect(!result.stderr.contains("warning:"), "\(program): \(result.stderr)")
        }

        /// The rewrite runs in kprobe-run-bcc before the worker; its result is cached like any
        /// object, so a second run starts neither process.
        @Test func secondCompileComesFromTheCompileCache() throws {
            let scratch = try ScratchDirectory()
            let arguments = ["compile", "-v", "--headers", BCC.headers, Tool.example("bcc/opencount.c"), "-o", scratch.path + "/out.o"]
            let first = try Tool.run(arguments, environment: environment)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stderr.contains("stored in the compile cache"), "\(first.stderr)")
            let second = try Tool.run(arguments, environment: environment)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stderr.contains("compile cache hit"), "\(second.stderr)")
        }

        @Test func execsnoopExamplePrintsDecodedEvents() throws {
            let result = try Tool.run(["--headers", BCC.headers, Tool.example("bcc/execsnoop.c"), "-d", "4"], environment: environment) {
                _ = try? Process.run(URL(fileURLWithPath: "/bin/true"), arguments: [])
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.split(separator: "\n").contains { $0.contains("comm=true") }, "\(result.stdout.prefix(2000))")
        }

        @Test func readsizeExamplePrintsALog2Histogram() throws {
            let result = try Tool.run(["--headers", BCC.headers, Tool.example("bcc/readsize.c"), "-d", "3"], environment: environment) {
                _ = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)
            }
            #expect(result.status == 0, "\(result.stderr)")
            let buckets = result.stdout.split(separator: "\n").filter { $0.contains(" -> ") && $0.contains("|") }
            #expect(!buckets.isEmpty, "\(result.stdout)")
            #expect(buckets.contains { $0.contains("*") }, "\(result.stdout)")
        }
    }
}

enum BCC {
    static let headers = Tool.packageRoot + "/../shared/testkernel/kheaders.tar.xz"
    static var corpus: [String] {
        let directory = Tool.packageRoot + "/../shared/bcc-corpus"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".c") }.sorted().map { directory + "/" + $0 }
    }
}

extension HostKernel {
    /// The C text the bpfcc-tools 0.26 hand to BCC, made at test time from the installed tools
    /// (Tests/bcc-corpus/generate.py, never committed), measured against BCC 0.26 itself on the same
    /// text and headers (Tests/bcc-corpus/measure.py; BCC's verdicts are cached under .build).
    @Suite(.serialized, .enabled(if: isRoot && BCCTools.available, "needs root, ../shared/testkernel, bpfcc-tools and python3-bpfcc"))
    struct BCCToolsCorpusTests {
        static let cache = try! ScratchDirectory()
        var environment: [String: String] { ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"] }

        @Test func kprobeRunHandlesWhatBCCHandles() throws {
            let corpus = try BCCTools.corpus()
            // kprobe-run's compile cache is kept too: its keys cover the rewriter and the worker,
            // so a rebuilt kprobe-run compiles everything again and an unchanged one need not.
            let measured = try BCCTools.python(
                ["measure.py", corpus, "--kprobe-run", Tool.binary, "--headers", BCC.headers,
                 "--cache", Tool.packageRoot + "/.build/bcc-corpus/bcc-verdicts", "--jobs", "2"],
                environment: ["KPROBE_RUN_CACHE_DIR": Tool.packageRoot + "/.build/bcc-corpus/kprobe-run-cache"])
            #expect(measured.status == 0, "\(measured.output)")
            let data = try Data(contentsOf: URL(fileURLWithPath: corpus + "/report.json"))
            let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let bcc = try #require(report["bcc"] as? Int), both = try #require(report["ours_of_bcc"] as? Int)
            #expect(bcc >= 80, "BCC handles only \(bcc) texts: \(measured.output)")
            #expect(Double(both) >= 0.95 * Double(bcc), "\(measured.output)")
        }

        /// Tools whose programs are all tracepoints run here for real, their text unchanged. The
        /// test kernel's headers do not describe this kernel's structs, so only what comes from
        /// tracepoint records and helpers is checked.
        @Test func syscountCountsSystemCalls() throws {
            let result = try Tool.run(["--headers", BCC.headers, try BCCTools.corpus() + "/syscount.c", "-d", "3"],
                                      environment: environment) {
                _ = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)
            }
            #expect(result.status == 0, "\(result.stderr)")
            let rows = result.stdout.split(separator: "\n").filter { $0.split(separator: " ").count == 2 && $0.split(separator: " ").allSatisfy { Int($0) != nil } }
            #expect(rows.count >= 3, "\(result.stdout.prefix(2000))")
        }

        @Test func exitsnoopPrintsDecodedExits() throws {
            let result = try Tool.run(["--headers", BCC.headers, try BCCTools.corpus() + "/exitsnoop.c", "-d", "4"],
                                      environment: environment) {
                _ = try? Process.run(URL(fileURLWithPath: "/bin/true"), arguments: [])
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.split(separator: "\n").contains { $0.contains("task=true") && $0.contains("exit_time=") },
                    "\(result.stdout.prefix(2000))")
        }

        @Test func softirqsPrintsAHistogramPerVector() throws {
            let result = try Tool.run(["--headers", BCC.headers, try BCCTools.corpus() + "/softirqs.c", "-d", "3"],
                                      environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("dist [vec="), "\(result.stdout.prefix(2000))")
            #expect(result.stdout.split(separator: "\n").contains { $0.contains("|") && $0.contains("*") }, "\(result.stdout.prefix(2000))")
        }
    }
}

enum BCCTools {
    static let python3 = "/usr/bin/python3"
    static var available: Bool {
        FileManager.default.fileExists(atPath: BCC.headers) && FileManager.default.fileExists(atPath: "/usr/sbin/execsnoop-bpfcc")
            && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/bcc/__init__.py")
    }

    /// The corpus generate.py makes from the installed tools (again only when they or it change).
    static func corpus() throws -> String {
        let directory = Tool.packageRoot + "/.build/bcc-corpus/tools"
        let generated = try python(["generate.py", directory])
        guard generated.status == 0 else { throw CorpusError(message: generated.output) }
        return directory
    }

    /// `-a` arguments for a corpus text: where the tool's Python attached each program.
    static func attachArguments(tool: String, corpus: String) throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: corpus + "/\(tool).json"))
        let description = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        var arguments: [String] = []
        for program in description["programs"] as? [[String: Any]] ?? [] {
            guard let function = program["function"] as? String, let event = program["event"] as? String else { continue }
            switch program["call"] as? String {
            case "attach_kprobe": arguments += ["-a", "kprobe:\(event)=\(function)"]
            case "attach_kretprobe": arguments += ["-a", "kretprobe:\(event)=\(function)"]
            default: break
            }
        }
        return arguments
    }

    struct CorpusError: Error, CustomStringConvertible {
        var message: String
        var description: String { "generate.py failed: \(message)" }
    }

    /// Runs a script of Tests/bcc-corpus with Debian's python3 (where python3-bpfcc lives).
    static func python(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python3)
        process.arguments = [Tool.packageRoot + "/Tests/bcc-corpus/" + arguments[0]] + arguments.dropFirst()
        process.currentDirectoryURL = URL(fileURLWithPath: Tool.packageRoot)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
