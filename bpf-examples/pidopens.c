// pidopens: openat(2) calls of one process only. kprobe-run writes the pid given with -p, or
// the pid of the command started with -c, into kprobe_run_pid before loading the program:
//   kprobe-run bpf-examples/pidopens.c -c 'ls /'
// (KPROBE_RUN_PID is also defined as a macro when the probe is compiled with -p or -c.)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event {
    u32 pid;
    char comm[16];
    char filename[256];
};
const struct event *unused_event __attribute__((unused));

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} events SEC(".maps");

const volatile int kprobe_run_pid = 0;

SEC("tracepoint/syscalls/sys_enter_openat")
int trace_openat(struct trace_event_raw_sys_enter *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct event *e;

    if (kprobe_run_pid && pid != kprobe_run_pid)
        return 0;
    e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = pid;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)ctx->args[1]);
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
