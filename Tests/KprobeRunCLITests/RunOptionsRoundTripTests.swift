import ArgumentParser
import Testing
import TestSupport
@testable import KprobeRunCLI

/// The device side of --adb gets the run options as `Run.deviceArguments` writes them. Every
/// option of `run` is either forwarded (a sample below, which must survive parse → serialise →
/// parse) or the host's alone (listed with the reason); a new option is neither until someone
/// decides, so it cannot be silently dropped on device runs.
@Suite(.tags(.unit)) struct RunOptionsRoundTripTests {
    /// A non-default setting of each forwarded option, as a user would type it.
    static let samples: [String: [String]] = [
        "--duration": ["-d", "2.5"],
        "--attach": ["-a", "kprobe:vfs_read=on_read", "--attach", "tracepoint:sched:sched_switch=on_switch"],
        "--format": ["--format", "json"],
        "--timestamps": ["-T"],
        "--interval": ["-i", "0.5"],
        "--clear": ["-i", "1", "--clear"],
        "--pid": ["-p", "42"],
        "--command": ["-c", "ls -l '/tmp/a b'"],
        "--exit-with-command": ["-c", "true", "--exit-with-command"],
        "--max-events": ["--max-events", "7"],
        "--verbose": ["-v"],
        "--map-size": ["--map-size", "events=65536", "--map-size", "counts=1024"],
        "--set": ["--set", "min_us=10", "--set", "targ_comm=bash"],
        "--only": ["--only", "on_read"],
        "--skip": ["--skip", "on_write", "--skip", "on_open"],
    ]

    /// Options that mean something only on the host, and why.
    static let hostOnly: [String: String] = [
        "--program": "the probe is compiled on the host",
        "--output": "results are written on the host (the device's output streams back)",
        "-D": "compile option", "-I": "compile option", "--headers": "compile option",
        "--keep-module": "compile option (the device's headers are fetched by the host)",
        "--dialect": "compile option", "--mcpu": "compile option",
        "--adb": "names the device",
        "--help": "help",
    ]

    @Test func everyRunOptionIsForwardedOrHostOnly() throws {
        let declared = try DeclaredArgument.of(Run.self)
        #expect(declared.count > 15, "the parser's description of run lists its options")
        for argument in declared {
            guard let spelling = argument.spelling else { continue }
            let long = argument.names?.first { $0.kind == "long" }?.spelled ?? spelling
            #expect(Self.samples[long] != nil || Self.hostOnly[long] != nil || Self.hostOnly[spelling] != nil,
                    "\(long): add a sample to RunOptionsRoundTripTests.samples and forward it in Run.deviceArguments (through its option group), or list it as host-only")
        }
    }

    /// What the device side runs with, field by field.
    static func forwarded(_ run: Run) -> String {
        fingerprint(run.options) + " " + fingerprint(run.load) + " verbose=\(run.compile.verbose)"
    }

    @Test(arguments: samples.sorted { $0.key < $1.key })
    func forwardedOptionSurvivesTheRoundTrip(option: String, sample: [String]) throws {
        let defaults = try parse(Run.self, ["probe.o"])
        let original = try parse(Run.self, ["probe.o"] + sample)
        #expect(Self.forwarded(original) != Self.forwarded(defaults), "the sample for \(option) sets nothing")
        let device = try parse(Run.self, ["probe.o"] + original.deviceArguments)
        #expect(Self.forwarded(device) == Self.forwarded(original), "\(option) is lost on the way to the device: \(original.deviceArguments)")
    }

    @Test func allSamplesTogetherSurviveTheRoundTrip() throws {
        let together = Self.samples.filter { !["--pid", "--command", "--exit-with-command", "--clear"].contains($0.key) }
            .sorted { $0.key < $1.key }.flatMap(\.value) + ["-c", "sleep 1", "--exit-with-command", "--clear"]
        let original = try parse(Run.self, ["probe.o"] + together)
        let device = try parse(Run.self, ["probe.o"] + original.deviceArguments)
        #expect(Self.forwarded(device) == Self.forwarded(original))
    }

    @Test func hostOnlyOptionsStayOnTheHost() throws {
        let run = try parse(Run.self, ["probe.c", "-D", "X=1", "-I", "/", "--dialect", "bcc", "--mcpu", "v2", "--keep-module", "-o", "out.json", "--adb", "emulator-5554"])
        #expect(run.deviceArguments == ["--format", "text"])
    }
}
