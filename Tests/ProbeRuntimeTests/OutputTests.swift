import Testing
import KprobeSupport
@testable import ProbeRuntime

@Suite struct OutputTests {
    @Test func jsonEscaping() {
        #expect(JSON.string("plain") == "\"plain\"")
        #expect(JSON.string("a\"b\\c") == "\"a\\\"b\\\\c\"")
        #expect(JSON.string("line\nnext\ttab\r") == "\"line\\nnext\\ttab\\r\"")
        #expect(JSON.string("\u{01}\u{1f}\u{7f}") == "\"\\u0001\\u001f\\u007f\"")
        #expect(JSON.string("héllo ✓") == "\"héllo ✓\"")
    }

    @Test func valueText() {
        let value = Value.structure([
            ("pid", .unsigned(42)),
            ("comm", .string("bash")),
            ("inner", .structure([("a", .signed(-1)), ("b", .bool(true))])),
            ("list", .array([.unsigned(1), .unsigned(2), .unsigned(3)])),
            ("ptr", .pointer(0xdead)),
            ("raw", .bytes([0x01, 0xab])),
        ])
        #expect(value.line == "pid=42 comm=bash inner={a=-1 b=true} list=[1,2,3] ptr=0xdead raw=0x01ab")
        #expect(value.json == #"{"pid":42,"comm":"bash","inner":{"a":-1,"b":true},"list":[1,2,3],"ptr":"0xdead","raw":"0x01ab"}"#)
        #expect(Value.string("a\nb\\").text == "a\\x0ab\\\\")
        #expect(Value.unsigned(7).line == "7")
    }

    @Test func countTableSortsByValue() {
        let entries: [(key: Value, value: Value)] = [
            (.string("sshd"), .unsigned(3)), (.string("bash"), .unsigned(120)), (.string("cat"), .unsigned(3)),
        ]
        let report = MapReport(name: "counts", entries: MapReport.ordered(entries, byValue: true))
        #expect(report.text == ["counts:", "  key   value", "  bash    120", "  cat       3", "  sshd      3"])
        #expect(JSONOutput().map(.table(report)) == [#"{"type":"map","name":"counts","entries":[{"key":"bash","value":120},{"key":"cat","value":3},{"key":"sshd","value":3}]}"#])
    }

    @Test func tablesOfStructsSortByKey() {
        let entries: [(key: Value, value: Value)] = [
            (.unsigned(10), .structure([("n", .unsigned(1)), ("t", .unsigned(5))])),
            (.unsigned(2), .structure([("n", .unsigned(7)), ("t", .unsigned(8))])),
        ]
        let report = MapReport(name: "stats", entries: MapReport.ordered(entries, byValue: true))
        #expect(report.text == ["stats:", "  key  n  t", "    2  7  8", "   10  1  5"])
        #expect(MapReport(name: "empty", entries: []).text == ["empty: (empty)"])
    }

    @Test func verifierLogTail() {
        var log = "libbpf: prog 'f': BPF program load failed: Permission denied\nlibbpf: prog 'f': -- BEGIN PROG LOAD LOG --\n"
        for line in 1...100 { log += "\(line): insn\n" }
        log += "R0 invalid mem access 'scalar'\n-- END PROG LOAD LOG --\nlibbpf: prog 'f': failed to load: -13\n"
        let tail = VerifierLog.tail(of: log)!
        #expect(tail.count == 41)
        #expect(tail.first == "... (61 earlier lines of the verifier log omitted)")
        #expect(tail.last == "R0 invalid mem access 'scalar'")
        #expect(tail[1] == "62: insn")
        #expect(VerifierLog.tail(of: "libbpf: failed to open\n") == nil)
        #expect(VerifierLog.tail(of: "-- BEGIN PROG LOAD LOG --\nshort\n-- END PROG LOAD LOG --\n") == ["short"])
        #expect(VerifierLog.warnings(in: log) == ["libbpf: prog 'f': BPF program load failed: Permission denied", "libbpf: prog 'f': failed to load: -13"])
        let error = ProbeObject.loadError(code: 13, log: log, object: "probe")
        #expect(error.kind == .rejected)
        #expect(error.message.contains("program 'f'"))
        #expect(error.message.hasSuffix("R0 invalid mem access 'scalar'"))
        #expect(ProbeObject.loadError(code: 1, log: "", object: "probe").kind == .notPermitted)
        #expect(ProbeObject.loadError(code: 1, log: "libbpf: prog 'fe': failed to load: -1\n", object: "probe",
                                      sections: ["fe": "fentry/vfs_read"], privileged: true).kind == .attach)
    }

    @Test func printkLines() {
        let line = "           <...>-5762    [001] d..31   508.807083: bpf_trace_printk: openat by cat"
        let parsed = PrintkLine(parsing: line[...])!
        #expect(parsed == PrintkLine(task: "<...>", pid: 5762, cpu: 1, timestamp: "508.807083", message: "openat by cat"))
        let spaced = PrintkLine(parsing: "  kworker/u8:1-ev mm-77 [000] ..... 1.5: bpf_trace_printk: x: y"[...])!
        #expect(spaced.task == "kworker/u8:1-ev mm")
        #expect(spaced.pid == 77)
        #expect(spaced.message == "x: y")
        #expect(PrintkLine(parsing: "  bash-1 [000] ..... 1.5: sched_switch: prev=a"[...]) == nil)
        #expect(JSONOutput().printk(parsed, time: nil) == #"{"type":"printk","message":"openat by cat","comm":"<...>","pid":5762,"cpu":1,"timestamp":"508.807083"}"#)
        #expect(JSONOutput().printk(parsed, time: 0.5) == #"{"type":"printk","time":0.500000,"message":"openat by cat","comm":"<...>","pid":5762,"cpu":1,"timestamp":"508.807083"}"#)
    }
}
