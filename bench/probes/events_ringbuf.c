// (f) event throughput, ring buffer: one record per getppid(2) of the loop process (-p PID).
// Records the ring buffer had no room for are counted in `dropped`.
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
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

const volatile int kprobe_run_pid = 0;
u64 seq = 0;
u64 dropped = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int fbench_rb(void *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != kprobe_run_pid)
        return 0;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __sync_fetch_and_add(&dropped, 1);
        return 0;
    }
    e->pid = pid;
    e->cpu = bpf_get_smp_processor_id();
    e->seq = __sync_fetch_and_add(&seq, 1);
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
