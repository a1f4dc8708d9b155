import ArgumentParser
import KernelHeaders
import KprobeSupport
import ProbeRuntime

/// `kprobe-run doctor`: what this kernel and this process can do, one line each, with the fix
/// where something is missing.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check what this kernel and process can trace, and say how to fix what is missing.",
        discussion: """
            One line per check: the BPF system call and privileges, BTF, kprobes, uprobes, tracefs, \
            fentry (BPF trampolines), ring buffers, kheaders, kernel headers in /lib/modules, SELinux, \
            unprivileged BPF and lockdown. Nothing is changed: programs and maps loaded to test are \
            dropped at once, and tracefs is not mounted.
            """
    )

    enum Format: String, CaseIterable, ExpressibleByArgument {
        case text, json
    }

    @Option(name: .long, help: "text (for people) or json (one object per line: name, status, detail, fix).")
    var format: Format = .text

    func run() throws {
        let checks = SystemChecks.run() + HeaderChecks.run()
        print(Self.render(checks, as: format), terminator: "")
    }

    static func render(_ checks: [DoctorCheck], as format: Format) -> String {
        switch format {
        case .text:
            let width = checks.map(\.name.count).max() ?? 0
            func padded(_ text: String, _ length: Int) -> String { text + String(repeating: " ", count: max(length - text.count, 1)) }
            let indent = String(repeating: " ", count: 8 + width + 2)
            return checks.map { check in
                padded(check.status.rawValue, 8) + padded(check.name, width + 2) + check.detail
                    + (check.fix.map { "\n" + indent + "fix: " + $0 } ?? "") + "\n"
            }.joined()
        case .json:
            return checks.map { check in
                var line = JSONLine()
                line.field("name", check.name)
                line.field("status", check.status.rawValue)
                line.field("detail", check.detail)
                if let fix = check.fix { line.field("fix", fix) }
                return line.text + "\n"
            }.joined()
        }
    }
}
