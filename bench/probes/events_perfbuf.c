// (f) event throughput, perf buffer: one record per getppid(2) of the loop process (-p PID).
// Records the kernel could not write are counted in `dropped` (kprobe-run also reports the
// perf buffer's own lost count).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event {
    u32 pid;
    u32 cpu;
    u64 seq;
    char comm[16];
};
const struct event *unused_event __attribute__((unused));

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(u32));
    __uint(value_size, sizeof(u32));
} events SEC(".maps");

const volatile int kprobe_run_pid = 0;
u64 seq = 0;
u64 dropped = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int fbench_pb(void *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != kprobe_run_pid)
        return 0;
    struct event e = {};
    e.pid = pid;
    e.cpu = bpf_get_smp_processor_id();
    e.seq = __sync_fetch_and_add(&seq, 1);
    bpf_get_current_comm(e.comm, sizeof(e.comm));
    if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e)) < 0)
        __sync_fetch_and_add(&dropped, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
