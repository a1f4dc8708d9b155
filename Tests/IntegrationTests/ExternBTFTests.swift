import CLibBPF
import Foundation
import Testing
import TestSupport

/// `__kconfig` externs (usdt.bpf.h's LINUX_HAS_BPF_COOKIE, a probe's LINUX_KERNEL_VERSION) need
/// BTF that clang emits only when the front end targets BPF; a probe compiled against kernel
/// headers is parsed for the host triple, so the worker hands its externs to code generation
/// itself. libbpf refuses an object without that BTF at open, before anything is loaded.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: BCC.headers), "needs ../shared/testkernel"))
struct ExternBTFTests {
    @Test func kconfigExternCompiledAgainstKernelHeadersOpens() throws {
        let scratch = try ScratchDirectory()
        let object = scratch.path + "/version.o"
        let probe = try scratch.write(named: "version.c", """
            #include <linux/bpf.h>
            #include <bpf/bpf_helpers.h>

            char LICENSE[] SEC("license") = "GPL";
            extern int LINUX_KERNEL_VERSION __kconfig;

            SEC("tracepoint/sched/sched_switch")
            int on_switch(void *ctx)
            {
                bpf_printk("kernel version %d", LINUX_KERNEL_VERSION);
                return 0;
            }
            """)
        let result = try Tool.run(["compile", "--headers", BCC.headers, probe, "-o", object],
                                  environment: ["KPROBE_RUN_CACHE_DIR": scratch.path + "/cache"])
        #expect(result.status == 0, "\(result.stderr)")
        let opened = bpf_object__open_file(object, nil)
        #expect(opened != nil, "libbpf cannot open the object: errno \(errno)")
        bpf_object__close(opened)
    }
}
