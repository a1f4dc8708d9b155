import KprobeSupport
import Testing
import TestSupport
@testable import KprobeRunCLI

@Suite(.tags(.unit)) struct DoctorTests {
    static let checks = [
        DoctorCheck("btf", .ok, "/sys/kernel/btf/vmlinux"),
        DoctorCheck("kprobes", .missing, "no \"kprobe\" PMU", fix: "use tracepoints"),
    ]

    @Test func textIsOneAlignedLinePerCheckWithTheFixBelow() {
        let text = Doctor.render(Self.checks, as: .text)
        #expect(text == """
            ok      btf      /sys/kernel/btf/vmlinux
            missing kprobes  no "kprobe" PMU
                             fix: use tracepoints

            """)
    }

    @Test func jsonIsOneObjectPerLine() {
        let json = Doctor.render(Self.checks, as: .json)
        #expect(json == """
            {"name":"btf","status":"ok","detail":"/sys/kernel/btf/vmlinux"}
            {"name":"kprobes","status":"missing","detail":"no \\"kprobe\\" PMU","fix":"use tracepoints"}

            """)
    }

    @Test func doctorParsesWithItsFormat() throws {
        #expect(try parse(Doctor.self, ["doctor", "--format", "json"]).format == .json)
        #expect(parseFailure(["doctor", "--format", "yaml"]).status == 2)
    }
}
