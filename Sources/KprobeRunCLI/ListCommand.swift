import ArgumentParser
import KprobeSupport
import ProbeRuntime

/// `kprobe-run -l [PATTERN]` (also `kprobe-run list`): the attach points this machine offers.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List attach points matching a pattern (also -l/--list, as in bpftrace).",
        discussion: """
            PATTERN is KIND:NAME with shell wildcards: kprobe:vfs_* (available_filter_functions), \
            tracepoint:sched:* (-v adds the record's fields), raw_tracepoint:*, fentry:* (kernel BTF), \
            uprobe:/bin/bash:read* (ELF symbols), usdt:/path/to/binary:* (.note.stapsdt; -v adds the \
            arguments), software:*, hardware:*. Without a kind, or without a pattern, the kernel's kinds \
            are searched. Lines are in the form --attach takes.

            Examples:
              kprobe-run -l 'tracepoint:syscalls:sys_enter_open*'
              kprobe-run -l -v 'tracepoint:sched:sched_switch'
              kprobe-run -l 'usdt:/usr/lib/x86_64-linux-gnu/libc.so.6:*'
              kprobe-run -l -p "$(pgrep -n python3)" 'usdt:*'
            """
    )

    @Argument(help: ArgumentHelp("What to list, e.g. 'kprobe:vfs_*'; everything of the kernel's when absent.", valueName: "PATTERN"))
    var pattern: String?

    @Flag(name: .shortAndLong, help: "Show tracepoint fields and USDT argument locations.")
    var verbose = false

    @Option(name: .short, help: ArgumentHelp("With usdt:PATTERN, list the USDT probes of every file this process maps (as tplist -p).", valueName: "PID"))
    var pid: Int32?

    func run() throws {
        let lines = try AttachPointListing(verbose: verbose, pid: pid, note: { Diagnostics.verbose($0) }).list(pattern)
        if lines.isEmpty, let pattern {
            Diagnostics.verbose("no attach point matches '\(pattern)'")
        }
        try? FileSystem.writeAll(Array(lines.map { $0 + "\n" }.joined().utf8), to: 1)
    }

    /// `-l`/`--list` anywhere before `--` is this command, as in bpftrace.
    static func normalize(_ arguments: [String]) -> [String] {
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        guard let flag = arguments[..<end].firstIndex(where: { $0 == "-l" || $0 == "--list" }) else { return arguments }
        var result = arguments
        result.remove(at: flag)
        return ["list"] + result
    }
}
