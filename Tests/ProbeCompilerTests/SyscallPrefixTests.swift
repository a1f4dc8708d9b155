import Glibc
import KprobeSupport
import Testing
@testable import ProbeCompiler

@Suite struct SyscallPrefixTests {
    @Test(.enabled(if: geteuid() == 0, "kallsyms shows symbols to root only"))
    func runningX86KernelUsesX64Wrappers() throws {
        try #require(RunningKernel.machine == "x86_64")
        #expect(SyscallPrefix.running() == "__x64_sys_")
    }

    @Test func typicalPrefixFollowsTheTriple() {
        #expect(SyscallPrefix.typical(forTriple: "x86_64-linux-gnu") == "__x64_sys_")
        #expect(SyscallPrefix.typical(forTriple: "aarch64-linux-gnu") == "__arm64_sys_")
        #expect(SyscallPrefix.typical(forTriple: "mips-linux-gnu") == "")
    }
}
