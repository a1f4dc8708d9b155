// hello: the smallest probe. A printk line for every program the system starts (tracepoint),
// read back from the kernel's trace pipe.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tracepoint/sched/sched_process_exec")
int hello(void *ctx)
{
    char comm[16];

    bpf_get_current_comm(comm, sizeof(comm));
    bpf_printk("hello from %s, pid %d", comm, bpf_get_current_pid_tgid() >> 32);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
