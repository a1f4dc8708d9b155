import ArgumentParser
import KprobeSupport
import Testing
import TestSupport
@testable import KprobeRunCLI

/// Command lines as users type them, parsed in-process: which command, which options.
@Suite(.tags(.unit)) struct ParseTests {
    @Test func runIsTheDefaultCommand() throws {
        let run = try parse(Run.self, ["probe.c", "-d", "5", "-T", "--format", "json"])
        #expect(run.source.probe == "probe.c")
        #expect(run.options.duration == 5)
        #expect(run.options.timestamps)
        #expect(run.options.format == .json)
        #expect(try parse(Run.self, ["run", "probe.o"]).source.probe == "probe.o")
    }

    @Test func programOnTheCommandLineOrStandardInput() throws {
        let inline = try parse(Run.self, ["-e", "int x;", "-d", "2"])
        #expect(inline.source.program == "int x;")
        #expect(inline.source.probe == nil)
        #expect(inline.source.shownName == "<command line>")
        #expect(try parse(Run.self, ["-", "-d", "2"]).source.probe == "-")
        #expect(try parse(Compile.self, ["compile", "-e", "int x;", "-o", "x.o"]).source.program == "int x;")
    }

    @Test func oneProbeExactly() {
        #expect(parseFailure([]).stderr.contains("give a probe"))
        let both = parseFailure(["probe.c", "-e", "int x;"])
        #expect(both.status == 2)
        #expect(both.stderr.contains("not both"), "\(both.stderr)")
    }

    @Test func negativeNumbersAreValuesThatAreRefused() {
        for arguments in [["probe.c", "-d", "-1"], ["probe.c", "-i", "-2"], ["probe.c", "--max-events", "-3"], ["probe.c", "-p", "-4"]] {
            let outcome = parseFailure(arguments)
            #expect(outcome.status == 2, "\(arguments)")
            #expect(!outcome.stderr.contains("Missing value"), "\(arguments): \(outcome.stderr)")
        }
        #expect(parseFailure(["probe.c", "-d", "-1"]).stderr.contains("positive number of seconds"))
    }

    @Test func outputExitWithCommandAndCommandChecks() throws {
        let run = try parse(Run.self, ["probe.c", "-o", "events.json", "-c", "true", "--exit-with-command"])
        #expect(run.output == "events.json")
        #expect(run.options.exitWithCommand)
        #expect(parseFailure(["probe.c", "--exit-with-command"]).stderr.contains("needs -c"))
        #expect(parseFailure(["probe.c", "-p", "1", "-c", "true"]).stderr.contains("give one"))
        #expect(parseFailure(["probe.c", "--clear"]).stderr.contains("--clear needs --interval"))
    }

    @Test func adbTakesAnOptionalSerial() throws {
        #expect(try parse(Run.self, ["--adb", "probe.c"]).remote.requestedSerial == "")
        #expect(try parse(Run.self, ["--adb", "emulator-5554", "probe.c"]).remote.requestedSerial == "emulator-5554")
        #expect(try parse(Run.self, ["probe.c"]).remote.requestedSerial == nil)
        #expect(try parse(Compile.self, ["compile", "--adb", "probe.c", "-o", "p.o"]).remote.requestedSerial == "")
        // A subcommand after --adb is no serial.
        #expect(AdbOptions.normalize(["--adb", "compile"]) == ["--adb=-", "compile"])
    }

    @Test func compileAndHeadersCommands() throws {
        let compile = try parse(Compile.self, ["compile", "probe.c", "-o", "probe.o", "-D", "X=1", "-I", "/", "--dialect", "bcc", "--verify"])
        #expect(compile.output == "probe.o")
        #expect(compile.compile.defines == ["X=1"])
        #expect(compile.compile.defineArguments == ["-DX=1"])
        #expect(compile.compile.includeArguments == ["-I/"])
        #expect(compile.verify)
        // Joined as cc takes them; after -- they are the -c command's.
        let joined = try parse(Compile.self, ["compile", "probe.c", "-o", "probe.o", "-DMAX_PID_NR=30", "-DVERBOSE", "-I/usr/include"])
        #expect(joined.compile.defines == ["MAX_PID_NR=30", "VERBOSE"])
        #expect(joined.compile.includeDirectories == ["/usr/include"])
        #expect(CompileOptions.normalize(["probe.c", "-DX", "--", "cc", "-DX"]) == ["probe.c", "-D", "X", "--", "cc", "-DX"])
        // --verify alone checks a probe or an existing object without writing one.
        #expect(try parse(Compile.self, ["compile", "--verify", "tool.bpf.o"]).output == nil)
        let unwritten = parseFailure(["compile", "probe.c"])
        #expect(unwritten.status == 2 && unwritten.stderr.contains("-o OUT.o"), "\(unwritten.stderr)")
        _ = try parse(Headers.Status.self, ["headers", "status"])
        _ = try parse(Headers.Extract.self, ["headers", "extract", "kheaders.ko", "-o", "dir"])
    }

    @Test func missingHeadersIsAUsageError() {
        for arguments in [["probe.c", "--headers", "/nonexistent/kheaders.tar.xz"], ["headers", "status", "--headers", "/nonexistent"]] {
            let outcome = parseFailure(arguments)
            #expect(outcome.status == 2, "\(arguments)")
            #expect(outcome.stderr.contains("no such file or directory"), "\(outcome.stderr)")
        }
    }

    @Test func helpForNoSuchCommandIsAUsageError() {
        let bogus = KprobeRunCommand.execute(["help", "bogus"])
        #expect(bogus.status == 2)
        #expect(bogus.stderr.contains("no such command"))
        #expect(KprobeRunCommand.execute(["help", "headers", "nope"]).status == 2)
        let help = KprobeRunCommand.execute(["help", "headers", "status"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: kprobe-run headers status"), "\(help.stdout)")
    }

    @Test func helpListsEveryExitCode() {
        let help = KprobeRunCommand.execute(["--help"])
        #expect(help.status == 0)
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains(FailureKind.summary), "\(help.stdout)")
    }

    /// README's exit-code table is the documented interface: one row per status, saying what
    /// `FailureKind` says.
    @Test func readmeExitCodeTableMatchesTheCode() throws {
        let readme = try FileSystem.readString(TestInputs.packageRoot + "/README.md")
        let section = try #require(readme.components(separatedBy: "## Exit codes").dropFirst().first)
        var rows: [Int32: String] = [:]
        for line in section.split(separator: "\n").prefix(while: { !$0.hasPrefix("## ") }) where line.hasPrefix("| ") {
            let cells = line.split(separator: "|").map { $0.trimmingSpaces }
            if cells.count >= 2, let code = Int32(cells[0]) { rows[code] = String(cells[1]) }
        }
        #expect(rows.keys.sorted() == [0] + FailureKind.allCases.map(\.rawValue))
        for kind in FailureKind.allCases {
            #expect(rows[kind.rawValue]?.hasPrefix(kind.meaning) == true, "README row \(kind.rawValue): \(rows[kind.rawValue] ?? "missing"), code: \(kind.meaning)")
        }
    }
}
