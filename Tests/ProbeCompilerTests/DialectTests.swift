import Testing
@testable import ProbeCompiler

@Suite struct DialectTests {
    @Test func bccMacrosMeanBCC() {
        #expect(Dialect.detect(source: "BPF_HASH(counts, u32);\nint kprobe__vfs_read(void *ctx) { return 0; }") == .bcc)
        #expect(Dialect.detect(source: "BPF_PERF_OUTPUT(events);") == .bcc)
        #expect(Dialect.detect(source: "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }") == .bcc)
        #expect(Dialect.detect(source: "BPF_HISTOGRAM(dist);") == .bcc)
        #expect(Dialect.detect(source: "#include <bcc/proto.h>\nint f(void *ctx) { return 0; }") == .bcc)
        #expect(Dialect.detect(source: "KFUNC_PROBE(vfs_read) { return 0; }") == .bcc)
    }

    @Test func conventionalNamesWithoutSECMeanBCC() {
        #expect(Dialect.detect(source: "int kprobe__vfs_read(struct pt_regs *ctx) { return 0; }") == .bcc)
        #expect(Dialect.detect(source: "int kretprobe__vfs_read(struct pt_regs *ctx) { return 0; }") == .bcc)
        #expect(Dialect.detect(source: "int raw_tracepoint__sched_switch(void *ctx) { return 0; }") == .bcc)
    }

    @Test func libbpfProgramsStayLibbpf() {
        #expect(Dialect.detect(source: "SEC(\"kprobe/vfs_read\") int kprobe__vfs_read(void *ctx) { return 0; }") == .libbpf)
        #expect(Dialect.detect(source: "#include \"vmlinux.h\"\nSEC(\"tracepoint/syscalls/sys_enter_openat\") int f(void *ctx) { return 0; }") == .libbpf)
    }

    @Test func commentsAndStringsDoNotCount() {
        #expect(Dialect.detect(source: "// like BPF_HASH( in BCC\nSEC(\"xdp\") int f(void *c) { return 0; }") == .libbpf)
        #expect(Dialect.detect(source: "/* kprobe__x */ int f(void) { const char *s = \"BPF_HASH(\"; return 0; }") == .libbpf)
    }
}
