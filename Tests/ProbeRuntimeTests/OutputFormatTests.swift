import Glibc
import KprobeSupport
import Testing
@testable import ProbeRuntime

/// Exact shapes of issue 5's output: histograms, folded stacks, JSON lines, symbolization.
@Suite struct OutputFormatTests {
    @Test func log2HistogramMatchesBCC() {
        // BCC numbering: bucket 1 is "0 -> 1", bucket 4 is 8..15; bucket 0 is not printed.
        let histogram = Histogram(name: "bytes", kind: .log2, buckets: [5, 3, 0, 12, 40])
        #expect(histogram.text == [
            "bytes:",
            "     value               : count     distribution",
            "         0 -> 1          : 3        |***                                     |",
            "         2 -> 3          : 0        |                                        |",
            "         4 -> 7          : 12       |************                            |",
            "         8 -> 15         : 40       |****************************************|",
        ])
        #expect(JSONOutput().histogram(histogram) == #"{"type":"histogram","name":"bytes","kind":"log2","buckets":[{"low":0,"high":1,"count":3},{"low":2,"high":3,"count":0},{"low":4,"high":7,"count":12},{"low":8,"high":15,"count":40}]}"#)
        #expect(Histogram(name: "e", kind: .log2, buckets: [0, 0]).text == ["e: (empty)"])
    }

    @Test func wideLog2HistogramHalvesTheBar() {
        var buckets = [UInt64](repeating: 0, count: 35)
        buckets[34] = 2
        buckets[33] = 1
        let text = Histogram(name: "big", kind: .log2, buckets: buckets).text
        #expect(text[1] == "               value                         : count     distribution")
        #expect(text.last == "          8589934592 -> 17179869183          : 2        |********************|")
        #expect(text[text.count - 2] == "          4294967296 -> 8589934591           : 1        |**********          |")
    }

    @Test func linearHistogram() {
        let histogram = Histogram(name: "depth", kind: .linear, buckets: [1, 0, 4])
        #expect(histogram.text == [
            "depth:",
            "     value         : count     distribution",
            "        0          : 1        |**********                              |",
            "        1          : 0        |                                        |",
            "        2          : 4        |****************************************|",
        ])
    }

    @Test func libbpfSlotsPrintLikeLibbpfTools() {
        // libbpf-tools slot 0 = 0..1, slot 3 = 8..15.
        let histogram = Histogram(name: "lat", key: .unsigned(7), slots: [2, 0, 0, 1])
        #expect(histogram.rows == [
            Histogram.Row(low: 0, high: 1, count: 2), Histogram.Row(low: 2, high: 3, count: 0),
            Histogram.Row(low: 4, high: 7, count: 0), Histogram.Row(low: 8, high: 15, count: 1),
        ])
        #expect(histogram.text[0] == "lat [7]:")
        let entries: [(key: Value, value: Value)] = [
            (.unsigned(1), .structure([("slots", .array([.unsigned(0), .unsigned(3)]))])),
        ]
        let found = MapReader.slotHistograms(name: "lat", entries: entries, keyed: false)
        #expect(found == [Histogram(name: "lat", key: nil, slots: [0, 3])])
        #expect(found?.first?.buckets == [0, 0, 3])
        // libbpf-tools' print_log2_hist header.
        #expect(found?.first?.text[1] == "     value               : count    distribution")
        #expect(MapReader.slotHistograms(name: "x", entries: [(.unsigned(1), .unsigned(2))], keyed: true) == nil)
    }

    /// hardirqs without -d fills count fields, not slots: a table, not empty histograms.
    @Test func emptySlotsWithLabelsAreNotHistograms() {
        let counted: Value = .structure([("count", .unsigned(3)), ("slots", .array([.unsigned(0), .unsigned(0)]))])
        let histograms = MapReader.slotHistograms(name: "infos", entries: [(.unsigned(1), counted)], keyed: true) ?? []
        #expect(MapReader.onlyLabels(histograms))
        let filled: Value = .structure([("count", .unsigned(3)), ("slots", .array([.unsigned(0), .unsigned(2)]))])
        #expect(!MapReader.onlyLabels(MapReader.slotHistograms(name: "infos", entries: [(.unsigned(1), filled)], keyed: true) ?? []))
    }

    /// Linear slots (runqlen's queue lengths) print as libbpf-tools' print_linear_hist: one row
    /// per non-empty slot, labelled by its value.
    @Test func linearSlotsPrintOnlyNonEmptyRows() {
        let histogram = Histogram(name: "hists", style: Histogram.SlotStyle(kind: .linear), key: nil, slots: [0, 5, 0, 10])
        #expect(histogram.text == [
            "hists:",
            "     value         : count     distribution",
            "        1          : 5        |********************                    |",
            "        3          : 10       |****************************************|",
        ])
        // cpufreq's `freq / 200`: slot k is the value k × 200.
        var stepped = histogram
        stepped.step = 200
        #expect(stepped.rows.map(\.low) == [200, 600])
    }

    @Test func bccHistogramSectionsBySlotField() {
        let entries: [(key: Value, value: Value)] = [
            (.structure([("disk", .string("sdb")), ("slot", .unsigned(2))]), .unsigned(4)),
            (.structure([("disk", .string("sda")), ("slot", .unsigned(1))]), .unsigned(1)),
            (.structure([("disk", .string("sda")), ("slot", .unsigned(3))]), .unsigned(9)),
        ]
        let histograms = MapReader.bucketHistograms(name: "dist", kind: .log2, entries: entries)!
        #expect(histograms.map(\.title) == ["dist [disk=sda]:", "dist [disk=sdb]:"])
        #expect(histograms[0].buckets == [0, 1, 0, 9])
        #expect(histograms[1].buckets == [0, 0, 4])
        let plain = MapReader.bucketHistograms(name: "b", kind: .log2, entries: [(.signed(3), .unsigned(5))])!
        #expect(plain == [Histogram(name: "b", kind: .log2, buckets: [0, 0, 0, 5])])
    }

    @Test func foldedStackLine() {
        let kernel = [Frame(address: 0xffff_ffff_8100_0010, symbol: "ksys_read", offset: 0x66, module: nil, isKernel: true),
                      Frame(address: 0xffff_ffff_8100_0020, symbol: "do_syscall_64", offset: 0x46, module: nil, isKernel: true)]
        let user = [Frame(address: 0x7f00_0000_1000, symbol: "__read", offset: 0xd, module: "libc.so.6", isKernel: false),
                    Frame(address: 0x5555_0000_1000, symbol: nil, offset: 0, module: "dd", isKernel: false)]
        let report = StackReport(name: "counts", entries: [
            StackReport.Entry(key: .structure([("pid", .unsigned(42)), ("comm", .string("my dd")),
                                               ("kern_stack_id", .signed(3)), ("user_stack_id", .signed(4))]),
                              value: .unsigned(27),
                              stacks: [("kern_stack", .success(kernel)), ("user_stack", .success(user))]),
            StackReport.Entry(key: .structure([("pid", .unsigned(7)), ("user_stack_id", .signed(-14))]), value: .unsigned(2),
                              stacks: [("user_stack", .failure(StackError(code: 14)))]),
        ])
        #expect(report.folded == ["my_dd;[unknown];__read;do_syscall_64;ksys_read 27", "pid:7 2"])
        for line in report.folded {
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && UInt64(parts[1]) != nil)
        }
        #expect(report.text == [
            "counts:",
            "  pid=42 comm=my dd kern_stack_id=3 user_stack_id=4: 27",
            "    kern_stack:", "      ksys_read+0x66", "      do_syscall_64+0x46",
            "    user_stack:", "      __read+0xd", "      0x555500001000 (dd)",
            "  pid=7 user_stack_id=-14: 2",
            "    user_stack:", "      [no stack: Bad address]",
        ])
        #expect(JSONOutput().map(.stacks(report)) == [#"{"type":"map","name":"counts","entries":[{"key":{"pid":42,"comm":"my dd","kern_stack_id":3,"user_stack_id":4},"value":27,"stacks":{"kern_stack":["ksys_read+0x66","do_syscall_64+0x46"],"user_stack":["__read+0xd","0x555500001000 (dd)"]}},{"key":{"pid":7,"user_stack_id":-14},"value":2,"stacks":{"user_stack":null}}]}"#])
        #expect(StackResolver.label("kern_stack_id") == "kern_stack")
        #expect(StackResolver.label("stackid") == "stack")
        #expect(StackResolver.isStackField("user_stack_id") && StackResolver.isStackField("stackid") && !StackResolver.isStackField("stack"))
    }

    @Test func kallsymsLookup() {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81000100 t helper
            ffffffff81000200 D some_data
            ffffffff81000300 T vfs_read
            ffffffffc0000000 t mod_func\t[mymod]
            """
        let symbols = KernelSymbols(kallsyms: Array(text.utf8))
        #expect(symbols.table.symbols.count == 4)
        #expect(symbols.frame(0xffff_ffff_8100_0105).text == "helper+0x5")
        #expect(symbols.frame(0xffff_ffff_8100_0250).text == "helper+0x150")
        #expect(symbols.frame(0xffff_ffff_8100_0300).text == "vfs_read")
        #expect(symbols.frame(0xffff_ffff_c000_0010).module == "mymod")
        #expect(symbols.frame(0xffff_ffff_8000_0000).symbol == nil)
        // kptr_restrict: every address 0, nothing usable.
        #expect(KernelSymbols(kallsyms: Array("0000000000000000 T _stext\n".utf8)).table.isEmpty)
    }

    @Test func symbolTablePrefersSizedSymbols() {
        let table = SymbolTable([
            .init(address: 0x1000, size: 0x10, name: "small"),
            .init(address: 0x2000, size: 0, name: "alias"),
            .init(address: 0x2000, size: 0x40, name: "sized"),
        ])
        #expect(table.lookup(0x1008)! == ("small", 8))
        #expect(table.lookup(0x1010) == nil)
        #expect(table.lookup(0x2010)! == ("sized", 0x10))
        #expect(table.lookup(0x0fff) == nil)
    }

    @Test func elfSymbolsOfBash() throws {
        // Debian's bash is stripped but exports its functions in .dynsym; a PIE, so link-time
        // addresses differ from file offsets only through its segments.
        let symbols = try #require(ELFSymbols(path: "/bin/bash"))
        let symbol = try #require(symbols.table.symbols.first { $0.size > 8 })
        let segment = try #require(symbols.segments.first { symbol.address >= $0.address && symbol.address - $0.address < $0.size })
        let fileOffset = symbol.address - segment.address + segment.offset
        let found = try #require(symbols.lookup(fileOffset: fileOffset + 4))
        #expect(found.offset == 4)
        #expect(symbols.table.lookup(symbol.address)?.name != nil)
    }

    @Test func userFramesOfThisProcess() throws {
        // getpid in libc, through /proc/self/maps and libc's ELF symbols (load bias included).
        let handle = dlopen(nil, RTLD_NOW)
        let address = try #require(dlsym(handle, "getpid"))
        let frame = UserSymbolizer().frame(UInt64(UInt(bitPattern: address)), pid: getpid())
        #expect(frame.symbol?.contains("getpid") == true, "\(frame)")
        #expect(frame.offset == 0)
        #expect(frame.module?.hasPrefix("libc") == true)
        let maps = Mapping.parse(maps: "5555-6666 r-xp 00001000 fe:00 1 /usr/bin/cat\n7777-8888 rw-p 00000000 00:00 0 \n7fff-8000 r-xp 00000000 00:00 0 [vdso]\n")
        #expect(maps == [Mapping(start: 0x5555, end: 0x6666, offset: 0x1000, path: "/usr/bin/cat"),
                         Mapping(start: 0x7fff, end: 0x8000, offset: 0, path: "[vdso]")])
    }

    @Test func jsonLineShapes() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let sink = OutputSink(fd: fds[1])
        let plain = Reporter(sink: sink, format: .json, timestamps: false, maxEvents: nil)
        plain.event(map: "events", label: false, value: .structure([("pid", .unsigned(1)), ("comm", .string("ls"))]))
        let timed = Reporter(sink: sink, format: .json, timestamps: true, maxEvents: 1)
        timed.start = MonotonicClock.seconds
        timed.event(map: "events", label: false, value: .unsigned(5))
        timed.event(map: "events", label: false, value: .unsigned(6))
        #expect(timed.limitReached)
        sink.flush()
        close(fds[1])
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(fds[0], &bytes, bytes.count)
        let lines = String(decoding: bytes[0..<max(count, 0)], as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines[0] == #"{"type":"event","map":"events","data":{"pid":1,"comm":"ls"}}"#)
        #expect(lines[1].hasPrefix(#"{"type":"event","time":0.0"#) && lines[1].hasSuffix(#","map":"events","data":5}"#))
        for line in lines {
            guard case let .object(fields)? = JSONValue.parse(line) else { Issue.record("not JSON: \(line)"); continue }
            #expect(fields["type"] == .string("event"))
        }
        #expect(JSONOutput().exit(TargetCommand.Status(code: 0, signal: nil)) == #"{"type":"exit","status":0}"#)
        #expect(JSONOutput().exit(TargetCommand.Status(waitStatus: 2)) == #"{"type":"exit","status":130,"signal":2}"#)
        #expect(TargetCommand.Status(waitStatus: 3 << 8) == TargetCommand.Status(code: 3, signal: nil))
        #expect(Reporter.seconds(1.5) == "1.500000")
        #expect(Reporter.seconds(12.0000004) == "12.000000")
        #expect(Reporter.clockTime().count == 8)
    }

    @Test func textEventsWithTimesAndLabels() {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let sink = OutputSink(fd: fds[1])
        let reporter = Reporter(sink: sink, format: .text, timestamps: true, maxEvents: nil)
        reporter.start = MonotonicClock.seconds + 100
        reporter.event(map: "exec", label: true, value: .structure([("pid", .unsigned(9))]))
        reporter.printk(PrintkLine(task: "ls", pid: 3, cpu: 0, timestamp: "1.0", message: "hi"))
        let folded = Reporter(sink: sink, format: .folded, timestamps: false, maxEvents: nil)
        folded.event(map: "exec", label: false, value: .unsigned(1))
        sink.flush()
        close(fds[1])
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(fds[0], &bytes, bytes.count)
        #expect(String(decoding: bytes[0..<max(count, 0)], as: UTF8.self) == "0.000000 exec: pid=9\n0.000000 hi\n")
    }

    @Test func metadataSection() {
        let json = #"{"events":{"events":"struct data_t"},"histograms":{"dist":"log2","lin":"linear"},"programs":{"f":"kprobe"},"stackTraces":["stacks"],"tables":{"dist":"histogram"}}"#
        let metadata = ObjectMetadata(json: json)
        #expect(metadata == ObjectMetadata(events: ["events": "struct data_t"], histograms: ["dist": "log2", "lin": "linear"], stackTraces: ["stacks"],
                                           tables: ["dist": "histogram"], programs: ["f": "kprobe"]))
        #expect(ObjectMetadata(json: "[1]") == nil)
        #expect(JSONValue.parse(#"{"a":[1,-2.5e3,true,null,"x\"\u00e9"]}"#) ==
                .object(["a": .array([.number(1), .number(-2500), .bool(true), .null, .string("x\"é")])]))
        #expect(JSONValue.parse(#"{"a":1"#) == nil)
        #expect(JSONValue.parse("1 2") == nil)
    }

    @Test func commandArgv() {
        #expect(TargetCommand.argv(for: "ls -l /") == ["ls", "-l", "/"])
        #expect(TargetCommand.argv(for: "ls / | wc -l") == ["/bin/sh", "-c", "ls / | wc -l"])
        #expect(TargetCommand.argv(for: "FOO=1 env") == ["/bin/sh", "-c", "FOO=1 env"])
        #expect(TargetCommand.argv(for: "echo 'a b'") == ["/bin/sh", "-c", "echo 'a b'"])
    }

    @Test func heldCommandRunsOnlyWhenReleased() throws {
        let marker = "/tmp/kprobe-run-held-\(getpid())"
        unlink(marker)
        let held = try TargetCommand.start("touch \(marker)")
        usleep(200_000)
        #expect(access(marker, F_OK) != 0, "the command ran before release")
        #expect(held.exited() == nil)
        held.release()
        var status: TargetCommand.Status?
        for _ in 0..<100 where status == nil {
            usleep(20_000)
            status = held.exited()
        }
        #expect(status == TargetCommand.Status(code: 0, signal: nil))
        #expect(access(marker, F_OK) == 0)
        unlink(marker)

        let abandoned = try TargetCommand.start("touch \(marker)")
        abandoned.abandon()
        #expect(access(marker, F_OK) != 0, "an abandoned command must not run")
    }

    /// Numbers from the kernel's tables: one per architecture's own range, then the unified range.
    @Test func syscallNamesFollowEachArchitecturesNumbers() throws {
        let x86 = try #require(SyscallNames.table(machine: "x86_64"))
        let arm = try #require(SyscallNames.table(machine: "aarch64"))
        #expect(x86[0] == "read" && x86[257] == "openat" && x86[334] == "rseq")
        #expect(arm[56] == "openat" && arm[63] == "read" && arm[293] == "rseq")
        for table in [x86, arm] {
            #expect(table[424] == "pidfd_send_signal" && table[450] == "set_mempolicy_home_node")
            #expect(table[451] == "cachestat" && table[462] == "mseal" && table[469] == "file_setattr")
        }
        #expect(SyscallNames.table(machine: "riscv64") == nil)
    }
}
