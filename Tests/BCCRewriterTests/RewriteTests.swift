import FoundationEssentials
import KprobeSupport
import ProbeCompiler
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import BCCRewriter

@Suite(.enabled(if: Fixtures.available, "needs \(Fixtures.archive) for kernel headers"))
struct RewriteTests {
    static let preamble = "#include <uapi/linux/ptrace.h>\n#include <linux/sched.h>\n#include <linux/fs.h>\n"

    @Test func tableDeclarationsBecomeBTFMaps() throws {
        let source = Self.preamble + """
        struct key_t { u32 pid; };
        BPF_HASH(one);
        BPF_HASH(two, struct key_t);
        BPF_HASH(three, u32, struct key_t);
        BPF_HASH(four, u32, u32, 128);
        BPF_ARRAY(arr, u64, 4);
        BPF_PERCPU_ARRAY(pca, u32, 8);
        BPF_PERCPU_HASH(pch, u32);
        BPF_HISTOGRAM(dist);
        BPF_HISTOGRAM(hdist, struct key_t, 16);
        BPF_PERF_OUTPUT(events);
        BPF_RINGBUF_OUTPUT(ring, 8);
        BPF_STACK_TRACE(stacks, 1024);
        BPF_TABLE("lru_hash", u32, u64, lru, 64);
        BPF_F_TABLE("hash", u32, u64, flagged, 32, BPF_F_NO_PREALLOC);
        int kprobe__vfs_read(struct pt_regs *ctx) { return 0; }
        """
        let rewrite = try Fixtures.rewrite(source)
        let text = rewrite.source
        #expect(text.contains("struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 10240); __type(key, u64); __type(value, u64); } one SEC(\".maps\");"))
        #expect(text.contains("__type(key, struct key_t); __type(value, u64); } two SEC"))
        #expect(text.contains("__type(key, u32); __type(value, struct key_t); } three SEC"))
        #expect(text.contains("__uint(max_entries, 128); __type(key, u32); __type(value, u32); } four SEC"))
        #expect(text.contains("BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, int); __type(value, u64); } arr SEC"))
        #expect(text.contains("BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 8); __type(key, int); __type(value, u32); } pca SEC"))
        #expect(text.contains("BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 10240); __type(key, u32); __type(value, u64); } pch SEC"))
        #expect(text.contains("BPF_MAP_TYPE_ARRAY); __uint(max_entries, 64); __type(key, int); __type(value, u64); } dist SEC"))
        #expect(text.contains("BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, struct key_t); __type(value, u64); } hdist SEC"))
        #expect(text.contains("BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, sizeof(int)); __uint(value_size, sizeof(__u32)); } events SEC"))
        #expect(text.contains("BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 32768); } ring SEC"))
        #expect(text.contains("BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 1024); __uint(key_size, sizeof(__u32)); __uint(value_size, 127 * sizeof(__u64)); } stacks SEC"))
        #expect(text.contains("BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 64);"))
        #expect(text.contains("__uint(map_flags, 1); } flagged SEC"))
        #expect(rewrite.metadata.tables["ring"] == "ringbuf")
        #expect(rewrite.metadata.stackTraces == ["stacks"])
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    @Test func methodsBecomeHelperCalls() throws {
        let source = Self.preamble + """
        struct data_t { u32 pid; char comm[16]; };
        BPF_HASH(counts, u32, u64);
        BPF_ARRAY(totals, u64, 1);
        BPF_PERF_OUTPUT(events);
        BPF_RINGBUF_OUTPUT(ring, 4);
        BPF_STACK_TRACE(stacks, 128);
        int kprobe__vfs_read(struct pt_regs *ctx) {
            u32 key = 1; u64 zero = 0, *value;
            value = counts.lookup(&key);
            counts.update(&key, &zero);
            counts.insert(&key, &zero);
            counts.delete(&key);
            value = counts.lookup_or_try_init(&key, &zero);
            value = counts.lookup_or_init(&key, &zero);
            counts.increment(key);
            counts.increment(key, 5);
            totals.atomic_increment(0);
            struct data_t data = {};
            events.perf_submit(ctx, &data, sizeof(data));
            ring.ringbuf_output(&data, sizeof(data), 0);
            struct data_t *reserved = ring.ringbuf_reserve(sizeof(struct data_t));
            if (reserved) { ring.ringbuf_submit(reserved, 0); }
            int id = stacks.get_stackid(ctx, 0);
            return id;
        }
        """
        let rewrite = try Fixtures.rewrite(source)
        let text = rewrite.source
        #expect(text.contains("value = ((__typeof__(counts.value))bpf_map_lookup_elem(&counts, &key));"))
        #expect(text.contains("bpf_map_update_elem(&counts, &key, &zero, BPF_ANY);"))
        #expect(text.contains("bpf_map_update_elem(&counts, &key, &zero, BPF_NOEXIST);"))
        #expect(text.contains("bpf_map_delete_elem(&counts, &key);"))
        #expect(text.contains("if (!__bcc_l"))
        #expect(text.contains("*__bcc_l") && text.contains("+= __bcc_a"))
        #expect(text.contains("__typeof__(*counts.value) __bcc_a") && text.contains(" = (5);"))
        #expect(text.contains("__sync_fetch_and_add(__bcc_l"))
        #expect(text.contains("bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &data, sizeof(data));"))
        #expect(text.contains("bpf_ringbuf_output(&ring, &data, sizeof(data), 0);"))
        #expect(text.contains("bpf_ringbuf_reserve(&ring, sizeof(struct data_t), 0);"))
        #expect(text.contains("bpf_ringbuf_submit(reserved, 0);"))
        #expect(text.contains("bpf_get_stackid(ctx, &stacks, 0);"))
        #expect(text.contains("SEC(\"kprobe/vfs_read\") int kprobe__vfs_read"))
        #expect(text.contains("#define BPF_LICENSE GPL\n#endif\nchar _license[] SEC(\"license\") = __BCC_LICENSE(BPF_LICENSE);"))
        #expect(rewrite.metadata.events == ["events": "struct data_t", "ring": "struct data_t"])
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    /// As in BCC, every non-static function is a program (its context's type picks the type, a
    /// kprobe when it says nothing), and every function is inlined.
    @Test func everyNonStaticFunctionIsAProgram() throws {
        let source = Self.preamble + """
        static int helper(int x) { return x + 1; }
        int untyped(void *ctx) { return helper(1); }
        int bare() { return 0; }
        int sampled(struct bpf_perf_event_data *ctx) { return 0; }
        int packet(struct __sk_buff *skb) { return 0; }
        KFUNC_PROBE(vfs_read, struct file *file) { return 0; }
        """
        let rewrite = try Fixtures.rewrite(source)
        #expect(rewrite.metadata.programs["untyped"] == "kprobe")
        #expect(rewrite.metadata.programs["bare"] == "kprobe")
        #expect(rewrite.metadata.programs["sampled"] == "perf_event")
        #expect(rewrite.metadata.programs["packet"] == "socket")
        #expect(rewrite.metadata.programs["kfunc__vmlinux__vfs_read"] == "fentry/vfs_read")
        #expect(rewrite.metadata.programs["helper"] == nil)
        #expect(rewrite.source.contains("__attribute__((always_inline)) static int helper(int x)"))
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    @Test func packetHeaderFieldsBecomeDextAndDins() throws {
        let source = """
        #include <bcc/proto.h>
        int route(struct __sk_buff *skb) {
            u8 *cursor = 0;
            struct ethernet_t *eth = cursor_advance(cursor, sizeof(*eth));
            struct ip_t *ip = cursor_advance(cursor, sizeof(*ip));
            if (eth->type != ETH_P_IP || ip->ver != 4) return 0;
            ip->src = ip->dst;
            return 0;
        }
        """
        let rewrite = try Fixtures.rewrite(source)
        #expect(rewrite.metadata.programs["route"] == "tc")
        #expect(rewrite.source.contains("bpf_dext_pkt(skb, (u64)(eth) + 12, 0, 16)"))
        #expect(rewrite.source.contains("bpf_dext_pkt(skb, (u64)(ip) + 0, 0, 4)"))
        #expect(rewrite.source.contains("bpf_dins_pkt(skb, (u64)(ip) + 12, 0, 32, bpf_dext_pkt(skb, (u64)(ip) + 16, 0, 32))"))
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    @Test func extraKprobeArgumentsComeFromRegisters() throws {
        let source = Self.preamble + """
        int kprobe__vfs_read(struct pt_regs *ctx, struct file *file,
                             char __user *buf, size_t count)
        {
            return count > 10;
        }
        int syscall__execve(struct pt_regs *ctx, const char __user *filename) { return 0; }
        int trace_connect(struct pt_regs *ctx, int fd) { return fd; }
        """
        let rewrite = try Fixtures.rewrite(source)
        let text = rewrite.source
        #expect(text.contains("SEC(\"kprobe/vfs_read\") int kprobe__vfs_read(struct pt_regs *ctx\n)"))
        #expect(text.contains("struct file *file = (struct file *)PT_REGS_PARM1(ctx);"))
        #expect(text.contains("char __user *buf = (char *)PT_REGS_PARM2(ctx);"))
        #expect(text.contains("size_t count = (size_t)PT_REGS_PARM3(ctx);"))
        #expect(text.contains("struct pt_regs *__bcc_syscall_regs = (struct pt_regs *)PT_REGS_PARM1(ctx);"))
        #expect(text.contains("bpf_probe_read_kernel(&filename, sizeof(filename), &__BCC_SYSCALL_PARM1(__bcc_syscall_regs));"))
        #expect(text.contains("SEC(\"kprobe\") int trace_connect(struct pt_regs *ctx)"))
        #expect(rewrite.metadata.programs == ["kprobe__vfs_read": "kprobe/vfs_read", "syscall__execve": "kprobe", "trace_connect": "kprobe"])
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    @Test func syscallNamesUseTheKernelsPrefix() throws {
        let source = Self.preamble + "int kprobe__sys_clone(struct pt_regs *ctx) { return 0; }\nint kretprobe__sys_clone(struct pt_regs *ctx) { return 0; }\n"
        #expect(try Fixtures.rewrite(source).metadata.programs == ["kprobe__sys_clone": "kprobe/__x64_sys_clone", "kretprobe__sys_clone": "kretprobe/__x64_sys_clone"])
        #expect(try Fixtures.rewrite(source, syscallPrefix: "").metadata.programs["kprobe__sys_clone"] == "kprobe/sys_clone")
    }

    @Test func implicitReadsOfKernelMemory() throws {
        let source = Self.preamble + """
        int kprobe__vfs_read(struct pt_regs *ctx, struct file *file) {
            struct task_struct *task = (struct task_struct *)bpf_get_current_task();
            u32 ppid = task->real_parent->tgid;
            const unsigned char *name = file->f_path.dentry->d_name.name;
            char *comm = task->comm;
            void *address = &task->pid;
            bpf_trace_printk("%d %p %p %s\\n", ppid, name, address, comm);
            return 0;
        }
        """
        let rewrite = try Fixtures.rewrite(source)
        let text = rewrite.source
        #expect(text.contains("u32 ppid = ({ __typeof__(task->real_parent->tgid) __bcc_v"))
        #expect(text.contains("&(({ __typeof__(task->real_parent) __bcc_v"))
        #expect(text.contains("(const void *)&(task->real_parent)); __bcc_v"))
        #expect(text.contains("({ __typeof__(file->f_path.dentry->d_name.name) __bcc_v"))
        #expect(text.contains("&(file->f_path.dentry));"))
        #expect(text.contains("char *comm = task->comm;"))
        #expect(text.contains("void *address = &task->pid;"))
        #expect(try Fixtures.errors(ofRewritten: rewrite) == nil)
    }

    @Test func tracepointProbeUsesGeneratedArgs() throws {
        let format = TracepointFormatTests.sched
        let header = VirtualFile(path: BCCPrelude.tracepointsPath,
                                  contents: TracepointFormat.structDefinition(category: "sched", event: "sched_process_exec", format: format))
        let source = """
        BPF_HISTOGRAM(pids);
        TRACEPOINT_PROBE(sched, sched_process_exec) {
            pids.increment(bpf_log2l(args->pid));
            return 0;
        }
        RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }
        """
        let rewrite = try Fixtures.rewrite(source, files: [header])
        #expect(rewrite.source.contains("SEC(\"tracepoint/sched/sched_process_exec\") TRACEPOINT_PROBE(sched, sched_process_exec) {"))
        #expect(rewrite.source.contains("SEC(\"raw_tracepoint/sched_switch\") RAW_TRACEPOINT_PROBE(sched_switch)"))
        #expect(rewrite.metadata.histograms == ["pids": "log2"])
        #expect(try Fixtures.errors(ofRewritten: rewrite, files: [header]) == nil)
    }

    @Test func linearHistogramsAndMetadataSection() throws {
        let source = Self.preamble + "BPF_HISTOGRAM(sizes, int, 32);\nint kprobe__vfs_read(struct pt_regs *ctx) { sizes.increment(PT_REGS_PARM3(ctx) / 1024); return 0; }\n"
        let rewrite = try Fixtures.rewrite(source)
        #expect(rewrite.metadata.histograms == ["sizes": "linear"])
        #expect(rewrite.source.contains("__attribute__((section(\".kprobe_run.meta\"), used)) = \"{\\\"events\\\":{}"))
        #expect(try JSONDecoder().decode(ProbeMetadata.self, from: Data(rewrite.metadata.json().utf8)) == rewrite.metadata)
    }

    @Test func diagnosticsKeepTheUsersLines() throws {
        let source = Self.preamble + """
        BPF_HASH(counts, u32);
        int kprobe__vfs_read(struct pt_regs *ctx,
                             struct file *file)
        {
            u32 key = file->f_flags;
            counts.increment(key);
            return MARKER;
        }
        """
        let markerLine = source.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("MARKER") }! + 1
        let fixed = source.replacingAll("MARKER", with: "0")
        let rewrite = try Fixtures.rewrite(fixed, path: "probes/read.c")
        let broken = BCCRewrite(source: rewrite.source.replacingAll("return 0;\n}", with: "return undeclared_name;\n}"),
                                virtualFiles: rewrite.virtualFiles, arguments: rewrite.arguments, metadata: rewrite.metadata)
        let errors = try #require(try Fixtures.errors(ofRewritten: broken, path: "probes/read.c"))
        #expect(errors.contains("probes/read.c:\(markerLine):"))
        let failure = try #require(throws: Failure.self) { try Fixtures.rewrite(source, path: "probes/read.c") }
        #expect(failure.kind == .compile)
        #expect(failure.message.contains("probes/read.c:\(markerLine):"))
    }

    @Test func corpusProgramsRewriteAndParse() throws {
        guard FileSystem.isDirectory(Fixtures.corpus) else {
            print("skipping: \(Fixtures.corpus) is absent")
            return
        }
        var programs = 0
        for name in try corpusFiles() {
            let path = Fixtures.corpus + "/" + name
            let source = try FileSystem.readString(path)
            let tracepoints = TracepointFormat.referencedTracepoints(in: source).map { tracepoint in
                "struct tracepoint__\(tracepoint.category)__\(tracepoint.event) { char __pad0[8]; const void *skbaddr; const void *skaddr; __u16 sport; __u16 dport; __u8 saddr[4]; __u8 daddr[4]; __u8 saddr_v6[16]; __u8 daddr_v6[16]; __u16 family; int cong_state; const void *ptr; __u64 bytes_alloc; __u32 order; __u64 pfn; };"
            }
            let files = [VirtualFile(path: BCCPrelude.tracepointsPath, contents: tracepoints.joined(separator: "\n"))]
            let rewrite = try Fixtures.rewrite(source, path: path, files: files)
            #expect(!rewrite.metadata.programs.isEmpty, "\(name) has no programs")
            let errors = try Fixtures.errors(ofRewritten: rewrite, path: path, files: files)
            #expect(errors == nil, "\(name): \(errors ?? "")")
            programs += 1
        }
        #expect(programs == 18)
    }

    func corpusFiles() throws -> [String] {
        guard let directory = opendir(Fixtures.corpus) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".c") { names.append(name) }
        }
        return names.sorted()
    }
}
