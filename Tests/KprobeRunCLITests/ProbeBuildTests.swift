import Testing
import TestSupport
@testable import KprobeRunCLI

@Suite(.tags(.unit)) struct ProbeBuildTests {
    /// A probe that includes vmlinux.h gets kernel BTF before header trees (which have none).
    @Test func probesThatIncludeVmlinuxHeader() {
        #expect(ProbeBuild.includesVmlinuxHeader("#include <vmlinux.h>\n#include <bpf/bpf_helpers.h>\n"))
        #expect(ProbeBuild.includesVmlinuxHeader("// tool\n  #  include \"vmlinux.h\"\n"))
        #expect(!ProbeBuild.includesVmlinuxHeader("#include <linux/sched.h>\n#include <uapi/linux/ptrace.h>\n"))
        #expect(!ProbeBuild.includesVmlinuxHeader("// no #include <vmlinux.h> here\n#include \"my_vmlinux.h\"\n"))
    }
}
