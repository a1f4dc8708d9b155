import Foundation
import Testing
import TestSupport

extension HostKernel {
    /// The ground BCC's own tests cover (tests/python, test_clang.py first), in programs of our
    /// own: where BCC 0.26 compiles and loads a program, kprobe-run compiles it and the kernel
    /// verifies it; where BCC rejects one, kprobe-run rejects it with a compile error (exit 3).
    @Suite(.serialized, .enabled(if: isRoot && FileManager.default.fileExists(atPath: BCC.headers), "needs root and ../shared/testkernel"))
    struct BCCDialectTests {
        static let cache = try! ScratchDirectory()

        struct Case: CustomTestStringConvertible, Sendable {
            enum Expectation: Sendable {
                /// Compiles and every program passes the verifier.
                case verifies
                /// Compiles; its programs need what this kernel refuses (BPF trampolines).
                case compiles
                /// A compile error whose message contains this.
                case rejected(String)
            }
            var name: String
            var source: String
            var expectation: Expectation
            var testDescription: String { name }
        }

        static let cases: [Case] = [
            Case(name: "kprobe arguments read through kernel pointers", source: """
                #include <linux/sched.h>
                #include <uapi/linux/ptrace.h>
                int on_switch(struct pt_regs *ctx, struct task_struct *prev) { pid_t p = prev->pid; return p != -1; }
                """, expectation: .verifies),
            Case(name: "nested reads, a static helper, a second argument", source: """
                #include <linux/fs.h>
                static void show(struct file *f) {
                    if (!f) return;
                    const char *name = f->f_path.dentry->d_name.name;
                    bpf_trace_printk("%s\\n", name);
                }
                static void show_second(int unused, struct file *f) { show(f); }
                int first(struct pt_regs *ctx, struct file *f) { show(f); return 0; }
                int second(struct pt_regs *ctx, int unused, struct file *f) { show_second(unused, f); return 0; }
                """, expectation: .verifies),
            Case(name: "a kernel pointer a static function returns", source: """
                #include <linux/skbuff.h>
                #include <linux/ip.h>
                static struct iphdr *ip_of(const struct sk_buff *skb) { return (struct iphdr *)(skb->head + skb->network_header); }
                int kprobe__ip_rcv(struct pt_regs *ctx, struct sk_buff *skb) {
                    struct iphdr *ip = ip_of(skb);
                    u8 ttl = ((u8 *)ip)[8];
                    return ttl;
                }
                """, expectation: .verifies),
            Case(name: "a kernel pointer kept in a table, read after lookup", source: """
                #include <net/sock.h>
                BPF_HASH(pending, u32, struct sock *);
                int enter(struct pt_regs *ctx, struct sock *sk) { u32 pid = bpf_get_current_pid_tgid(); pending.update(&pid, &sk); return 0; }
                int leave(struct pt_regs *ctx) {
                    u32 pid = bpf_get_current_pid_tgid();
                    struct sock **skpp = pending.lookup(&pid);
                    if (!skpp) return 0;
                    struct sock *sk = *skpp;
                    return sk->__sk_common.skc_dport;
                }
                """, expectation: .verifies),
            Case(name: "member reads through a macro (TCP_SKB_CB), explicit and implicit", source: """
                #include <uapi/linux/ptrace.h>
                #include <net/tcp.h>
                int kprobe__tcp_retransmit_skb(struct pt_regs *ctx, struct sock *sk, struct sk_buff *skb) {
                    u32 seq = 0;
                    bpf_probe_read_kernel(&seq, sizeof(seq), &TCP_SKB_CB(skb)->seq);
                    return seq + TCP_SKB_CB(skb)->end_seq;
                }
                """, expectation: .verifies),
                        Case(name: "bpf_get_current_task and a cast context register", source: """
                #include <linux/sched.h>
                #include <net/inet_sock.h>
                int prio(struct pt_regs *ctx) { struct task_struct *t = (struct task_struct *)bpf_get_current_task(); return t->prio; }
                int port(struct pt_regs *ctx) { struct sock *sk = (struct sock *)ctx->di; return sk->sk_dport; }
                """, expectation: .verifies),
            Case(name: "lookup_or_init dereferenced unchecked", source: """
                #include <linux/sched.h>
                struct pair { u32 prev; u32 next; };
                BPF_HASH(switches, struct pair, u64, 1024);
                int kprobe__finish_task_switch(struct pt_regs *ctx, struct task_struct *prev) {
                    struct pair key = {};
                    u64 zero = 0, *count;
                    key.next = bpf_get_current_pid_tgid();
                    key.prev = prev->pid;
                    count = switches.lookup_or_init(&key, &zero);
                    (*count)++;
                    return 0;
                }
                """, expectation: .verifies),
            Case(name: "functions with void, absent and table-typed contexts are programs", source: """
                BPF_HASH(calls);
                void count(struct pt_regs *ctx) { u64 key = 0, one = 1; calls.insert(&key, &one); key = 1; calls.update(&key, &one); }
                int plain(void *ctx) { return 0; }
                int none() { return 0; }
                """, expectation: .verifies),
            Case(name: "a program defining do_sys_open", source: """
                #include <uapi/linux/ptrace.h>
                int do_sys_open(struct pt_regs *ctx, const char *filename, int flags, int mode) {
                    bpf_trace_printk("%d\\n", flags);
                    return 0;
                };
                """, expectation: .verifies),
            Case(name: "table macros: defaults, unnamed, int128, enums, trie, maps of maps, public", source: """
                enum colour { RED, GREEN };
                struct tagged { enum colour c; };
                BPF_HASH(h1);
                BPF_HASH(h2, u32);
                BPF_HASH(h3, u32, int);
                BPF_HASH(anon, int, struct { u64 a; u64 b; u64 c:36; u64 d:28; struct { u32 x; u32 y; } s; }, 10);
                BPF_HASH(wide, unsigned __int128, __int128);
                BPF_HASH(tags, struct tagged);
                struct v4 { u32 prefixlen; u32 addr; };
                BPF_LPM_TRIE(routes, struct v4, u32, 128);
                BPF_ARRAY(inner, int, 4);
                BPF_ARRAY_OF_MAPS(outer, "inner", 8);
                BPF_HASH_OF_MAPS(outer_by_key, u32, "inner", 8);
                BPF_TABLE_PUBLIC("hash", int, int, shared, 10);
                int use(void *ctx) {
                    int k = 0;
                    struct v4 prefix = { 32, 0x0100007f };
                    u32 *hop = routes.lookup(&prefix);
                    void *map = outer.lookup(&k);
                    if (map) { int *v = bpf_map_lookup_elem(map, &k); if (v) return *v; }
                    return (hop ? *hop : 0) + (anon.lookup(&k) != 0);
                }
                """, expectation: .verifies),
            Case(name: "a prog array called with macro and enum indexes, an array incremented", source: """
                BPF_PROG_ARRAY(jumps, 32);
                BPF_ARRAY(actions, u32, 32);
                #define SECOND (1U << 1)
                enum action { FIRST };
                int dispatch(struct xdp_md *ctx) {
                    actions.increment(FIRST);
                    actions.increment(SECOND);
                    jumps.call((void *)ctx, FIRST);
                    jumps.call((void *)ctx, SECOND);
                    return XDP_PASS;
                }
                """, expectation: .verifies),
            Case(name: "perf counters and build-id stacks", source: """
                #include <uapi/linux/bpf_perf_event.h>
                BPF_PERF_ARRAY(cycles, 64);
                BPF_STACK_TRACE_BUILDID(stacks, 128);
                BPF_HASH(seen, int, u64);
                int read_cycles(struct pt_regs *ctx) {
                    u64 value = cycles.perf_read(CUR_CPU_IDENTIFIER);
                    int cpu = bpf_get_smp_processor_id();
                    seen.update(&cpu, &value);
                    return 0;
                }
                int sample(struct bpf_perf_event_data *ctx) { int id = stacks.get_stackid(ctx, BPF_F_USER_STACK); seen.increment(id); return 0; }
                """, expectation: .verifies),
            Case(name: "tracepoint args: a kernel pointer and a __data_loc string", source: """
                #include <linux/skbuff.h>
                TRACEPOINT_PROBE(skb, kfree_skb) { struct sk_buff *skb = (struct sk_buff *)args->skbaddr; return skb->protocol; }
                TRACEPOINT_PROBE(irq, irq_handler_entry) { char name[32]; TP_DATA_LOC_READ_STR(&name, name, sizeof(name)); return name[0]; }
                """, expectation: .verifies),
            Case(name: "packets: proto.h headers read through a cursor", source: """
                #include <bcc/proto.h>
                int classify(void *ctx) {
                    u8 *cursor = 0;
                    struct ethernet_t *eth = cursor_advance(cursor, sizeof(*eth));
                    bpf_trace_printk("%llx %llx\\n", eth->dst, eth->src);
                    return 0;
                }
                """, expectation: .verifies),
            Case(name: "packets: a header field assigned", source: """
                #include <bcc/proto.h>
                int retarget(struct __sk_buff *skb) {
                    u8 *cursor = 0;
                    struct ethernet_t *eth = cursor_advance(cursor, sizeof(*eth));
                    if (eth->type != ETH_P_IP) return -1;
                    struct ip_t *ip = cursor_advance(cursor, sizeof(*ip));
                    if (ip->ver != 4) return 0;
                    ip->src = ip->dst;
                    return 0;
                }
                """, expectation: .verifies),
            Case(name: "code generation: fentry headers, kernel version, license", source: """
                #define BPF_LICENSE Dual BSD/GPL
                #include <linux/sched.h>
                #if LINUX_VERSION_CODE < KERNEL_VERSION(4, 0, 0)
                #error "LINUX_VERSION_CODE is the headers' kernel"
                #endif
                int kprobe__schedule(struct pt_regs *ctx) { return 0; }
                """, expectation: .verifies),
            Case(name: "fentry, fexit and LSM programs", source: """
                #include <linux/fs.h>
                KFUNC_PROBE(vfs_read, struct file *file, char *buf, size_t count) { return 0; }
                KRETFUNC_PROBE(vfs_read, struct file *file, char *buf, size_t count, ssize_t ret) { return 0; }
                LSM_PROBE(bpf, int cmd, union bpf_attr *attr, unsigned int size) { return 0; }
                """, expectation: .compiles),
            Case(name: "a syntax error", source: "int failure(void *ctx) { if (); return 0; }",
                 expectation: .rejected("expected expression")),
            Case(name: "seven arguments after ctx", source: """
                int many(struct pt_regs *ctx, int a, int b, int c, int d, int e, int f, int g) { return 0; }
                """, expectation: .rejected("at most 6")),
            Case(name: "a call of a non-static function", source: """
                int helper(void) { return 0; }
                int caller(struct pt_regs *ctx) { return helper(); }
                """, expectation: .rejected("make helper static")),
            Case(name: "a table of a type defined after it", source: """
                BPF_HASH(drops, struct key_t);
                struct key_t { u64 location; };
                """, expectation: .rejected("before its definition")),
        ]

        @Test(arguments: cases)
        func programBehavesAsInBCC(_ example: Case) throws {
            let scratch = try ScratchDirectory()
            let path = scratch.path + "/probe.c"
            try example.source.write(toFile: path, atomically: true, encoding: .utf8)
            var arguments = ["compile", "--dialect", "bcc", "--headers", BCC.headers, path, "-o", scratch.path + "/probe.o"]
            if case .verifies = example.expectation { arguments.insert("--verify", at: 1) }
            let result = try Tool.run(arguments, environment: ["KPROBE_RUN_CACHE_DIR": Self.cache.path + "/cache"])
            switch example.expectation {
            case .verifies, .compiles:
                #expect(result.status == 0, "\(result.stderr)")
            case .rejected(let message):
                #expect(result.status == 3, "\(result.stderr)")
                #expect(result.stderr.contains(message), "\(result.stderr)")
            }
        }
    }
}
