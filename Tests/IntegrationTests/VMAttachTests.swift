import Foundation
import Testing
import TestSupport

extension EmulatedKernel {
    /// Kprobe wildcards and kprobe listing need a kernel with kprobes: the test VM's.
    @Suite(.serialized, .enabled(if: isRoot && VM.available, "needs root and ../shared/testkernel with qemu-system-x86"))
    struct VMAttachTests {
        @Test(.timeLimit(.minutes(20)))
        func kprobeWildcardAttachesAtEveryMatch() throws {
            let scratch = try ScratchDirectory()
            let object = Tool.packageRoot + "/.build/vm-kprobe-wildcard.o"
            let compile = try Tool.run(["compile", "--headers", VM.testKernel + "/kheaders.tar.xz",
                                        Tool.packageRoot + "/Tests/vm/kprobe-wildcard.c", "-o", object],
                                       environment: ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"])
            try #require(compile.status == 0, "\(compile.stderr)")
            let result = try VM.run(["bash", "Tests/vm/kprobe-wildcards.sh", Tool.binary, object])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("PASS"), "\(result.output)")
        }
    }
}
