// (f) event throughput: `burst` records per getppid() of the generator (1 to 64), through a ring
// buffer or, with -DPERF_BUFFER, a perf buffer. `sent` counts the records the program made,
// `dropped` those the buffer had no room for; `seq` numbers them. Both buffers hold 256 KiB (per
// CPU for the perf buffer), as libbpf-tools' ring buffers: small enough that a consumer which
// falls behind loses records within a step of the benchmark instead of hiding in the buffer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event {
    u32 pid;
    u32 seq;
    u64 ts;
    char comm[16];
};
const struct event *unused_event __attribute__((unused));

#ifdef PERF_BUFFER
struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(u32));
    __uint(value_size, sizeof(u32));
} events SEC(".maps");
#else
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 << 10);
} events SEC(".maps");
#endif

const volatile pid_t targ_pid = 0;
const volatile u32 burst = 1;
u64 sent = 0, dropped = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (targ_pid && pid != targ_pid)
        return 0;
    for (u32 i = 0; i < burst && i < 64; i++) {
#ifdef PERF_BUFFER
        struct event e = {};
        e.pid = pid;
        e.seq = __sync_fetch_and_add(&sent, 1);
        e.ts = bpf_ktime_get_ns();
        bpf_get_current_comm(e.comm, sizeof(e.comm));
        if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e)))
            __sync_fetch_and_add(&dropped, 1);
#else
        u32 seq = __sync_fetch_and_add(&sent, 1);
        struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
        if (!e) {
            __sync_fetch_and_add(&dropped, 1);
            continue;
        }
        e->pid = pid;
        e->seq = seq;
        e->ts = bpf_ktime_get_ns();
        bpf_get_current_comm(e->comm, sizeof(e->comm));
        bpf_ringbuf_submit(e, 0);
#endif
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
