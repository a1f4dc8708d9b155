import Testing
@testable import ProbeRuntime

/// Issue 12's userspace decisions without a kernel: `--set` values against their types, twin and
/// placeholder selection, histograms labelled by the value's other fields, count ordering.
struct LoadOptionsTests {
    @Test func parameterValuesAreCheckedAgainstTheirType() throws {
        let pid = ParameterType(kind: .integer(signed: true), spelling: "pid_t")
        #expect(try pid.encode("1234", size: 4) == [0xd2, 0x04, 0, 0])
        #expect(try pid.encode("-1", size: 4) == [0xff, 0xff, 0xff, 0xff])
        #expect(try pid.encode("0x10", size: 4) == [0x10, 0, 0, 0])
        #expect(throws: ParameterType.Mismatch.self) { try pid.encode("2147483648", size: 4) }
        #expect(try pid.encode("-2147483648", size: 4) == [0, 0, 0, 0x80])
        #expect(throws: ParameterType.Mismatch.self) { try pid.encode("12abc", size: 4) }
        let byte = ParameterType(kind: .integer(signed: false), spelling: "__u8")
        #expect(try byte.encode("255", size: 1) == [255])
        #expect(throws: ParameterType.Mismatch.self) { try byte.encode("256", size: 1) }
        #expect(throws: ParameterType.Mismatch.self) { try byte.encode("-1", size: 1) }
        let wide = ParameterType(kind: .integer(signed: false), spelling: "u64")
        #expect(try wide.encode("18446744073709551615", size: 8) == [UInt8](repeating: 255, count: 8))
        let flag = ParameterType(kind: .bool, spelling: "bool")
        #expect(try flag.encode("true", size: 1) == [1])
        #expect(try flag.encode("0", size: 1) == [0])
        #expect(throws: ParameterType.Mismatch.self) { try flag.encode("maybe", size: 1) }
        let comm = ParameterType(kind: .text(8), spelling: "char[8]")
        #expect(try comm.encode("bash", size: 8) == Array("bash".utf8) + [0, 0, 0, 0])
        #expect(try comm.encode("1234567", size: 8).count == 8)
        #expect(throws: ParameterType.Mismatch.self) { try comm.encode("12345678", size: 8) }
        let mode = ParameterType(kind: .enumeration([("MODE_A", 0), ("MODE_B", 7)]), spelling: "enum mode")
        #expect(try mode.encode("MODE_B", size: 4) == [7, 0, 0, 0])
        #expect(try mode.encode("3", size: 4) == [3, 0, 0, 0])
        #expect(throws: ParameterType.Mismatch.self) { try ParameterType(kind: .unsupported, spelling: "struct x").encode("1", size: 4) }
        #expect(throws: RuntimeError.self) { try LoadOptions.Setting(parsing: "=3", flag: "--set") }
        var options = LoadOptions()
        try options.addMapSize("counts=100")
        #expect(options.mapSizes == ["counts": 100])
        #expect(throws: RuntimeError.self) { try options.addMapSize("counts=0") }
    }

    struct Kernel: KernelSupport {
        var trampolines: Bool
        var kernelBTF = true
        func kernelFunctionExists(_ name: String) -> Bool? { !name.hasPrefix("missing") }
    }

    @Test func twinsKeepTheBestVariantTheKernelSupports() throws {
        #expect(ProgramSelection.twin(section: "fentry/vfs_read")?.group == ProgramSelection.twin(section: "kprobe/vfs_read")?.group)
        #expect(ProgramSelection.twin(section: "tp_btf/sched_switch")?.group == ProgramSelection.twin(section: "tp/sched/sched_switch")?.group)
        #expect(ProgramSelection.twin(section: "fexit/vfs_read")?.group != ProgramSelection.twin(section: "kprobe/vfs_read")?.group)
        #expect(ProgramSelection.twin(section: "uprobe/x") == nil)

        let programs = [("read_fentry", "fentry/vfs_read"), ("read_kprobe", "kprobe/vfs_read"),
                        ("switch_btf", "tp_btf/sched_switch"), ("switch_raw", "raw_tp/sched_switch"),
                        ("switch_tp", "tracepoint/sched/sched_switch"), ("other_tp", "tracepoint/sched/sched_process_exit"),
                        ("stub", "fentry/dummy_file_read"), ("gone", "fentry/missing_function")]
        let here = try ProgramSelection.choose(programs: programs, explicit: [], options: LoadOptions(), features: Kernel(trampolines: false))
        #expect(Set(here.keys) == ["read_fentry", "switch_raw", "switch_tp", "stub", "gone"])
        #expect(here["read_fentry"]?.contains("cannot attach BPF trampolines") == true)
        let trampolines = try ProgramSelection.choose(programs: programs, explicit: ["stub"], options: LoadOptions(), features: Kernel(trampolines: true))
        #expect(Set(trampolines.keys) == ["read_kprobe", "switch_raw", "switch_tp", "gone"])
        let noBTF = try ProgramSelection.choose(programs: programs, explicit: [], options: LoadOptions(), features: Kernel(trampolines: false, kernelBTF: false))
        #expect(noBTF["switch_btf"] != nil && noBTF["switch_raw"] == nil)
        let kprobeStub = [("stub_entry", "kprobe/dummy_file_read"), ("stub_fentry", "fentry/dummy_file_read")]
        let verifying = try ProgramSelection.choose(programs: kprobeStub, explicit: [], options: LoadOptions(), features: Kernel(trampolines: true), verifying: true)
        #expect(Set(verifying.keys) == ["stub_fentry"])

        var only = LoadOptions()
        only.only = ["switch_tp"]
        only.skip = ["read_kprobe"]
        let chosen = try ProgramSelection.choose(programs: programs, explicit: [], options: only, features: Kernel(trampolines: false))
        #expect(Set(programs.map(\.0)).subtracting(chosen.keys) == ["switch_tp"])
        #expect(chosen["read_kprobe"] == "--skip")
        only.only = ["nope"]
        #expect(throws: RuntimeError.self) { try ProgramSelection.choose(programs: programs, explicit: [], options: only, features: Kernel(trampolines: false)) }
    }

    /// A trampoline program with no twin (biosnoop's fentry/blk_account_io_start, whose stand-in
    /// is a tp_btf program on another event) is left out where trampolines are missing, as the
    /// tool's userspace does; where they work, and when -a names it, it stays.
    @Test func trampolineProgramsWithoutATwinAreLeftOutWhereTheyCannotLoad() throws {
        let programs = [("start", "fentry/blk_account_io_start"), ("done", "fexit/blk_account_io_done"),
                        ("io_start", "tp_btf/block_io_start"), ("merge", "kprobe/blk_account_io_merge_bio")]
        let here = try ProgramSelection.choose(programs: programs, explicit: [], options: LoadOptions(), features: Kernel(trampolines: false))
        #expect(Set(here.keys) == ["start", "done"])
        #expect(here["start"]?.contains("cannot attach BPF trampolines") == true)
        let named = try ProgramSelection.choose(programs: programs, explicit: ["start"], options: LoadOptions(), features: Kernel(trampolines: false))
        #expect(Set(named.keys) == ["done"])
        let trampolines = try ProgramSelection.choose(programs: programs, explicit: [], options: LoadOptions(), features: Kernel(trampolines: true))
        #expect(trampolines.isEmpty)
        let noBTF = try ProgramSelection.choose(programs: programs, explicit: [], options: LoadOptions(), features: Kernel(trampolines: true, kernelBTF: false))
        #expect(Set(noBTF.keys) == ["io_start"])
    }

    @Test func slotHistogramsLabelledByTheOtherFields() throws {
        let value = Value.structure([("slots", .array([.unsigned(1), .unsigned(4)])), ("comm", .string("bash")), ("total", .unsigned(0))])
        let histograms = try #require(MapReader.slotHistograms(name: "hists", entries: [(.unsigned(42), value)], keyed: true))
        #expect(histograms.count == 1)
        #expect(histograms[0].title == "hists [42] comm=bash:")
        #expect(JSONOutput().histogram(histograms[0]).contains(#""key":42,"labels":{"comm":"bash"},"buckets""#))
        #expect(MapReader.slotHistograms(name: "x", entries: [(.unsigned(1), .structure([("count", .unsigned(3))]))], keyed: true) == nil)
    }

    @Test func structCountTablesSortByCount() {
        let entries: [(key: Value, value: Value)] = [
            (.unsigned(0), .structure([("count", .unsigned(3)), ("comm", .string(""))])),
            (.unsigned(1), .structure([("count", .unsigned(9)), ("comm", .string(""))])),
        ]
        #expect(MapReport.ordered(entries, byValue: true).map(\.key) == [.unsigned(1), .unsigned(0)])
        #expect(MapReport.ordered(entries, byValue: false).map(\.key) == [.unsigned(0), .unsigned(1)])
    }

    @Test func jsonLinesKeepFieldOrder() {
        var line = JSONLine(type: "lost")
        line.field("map", "a\"b")
        line.field("count", raw: "3")
        line.field("frames", strings: ["x", "y"])
        #expect(line.text == #"{"type":"lost","map":"a\"b","count":3,"frames":["x","y"]}"#)
        #expect(JSONOutput().lost(source: "trace_pipe", map: nil, count: 2) == #"{"type":"lost","source":"trace_pipe","count":2}"#)
    }
}
