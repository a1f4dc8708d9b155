// opencount (BCC dialect): openat(2) calls counted per command in a BPF_HASH with a
// struct key; kprobe-run prints the table when the run ends.
#include <linux/sched.h>

struct key_t {
    char comm[TASK_COMM_LEN];
};

BPF_HASH(opens, struct key_t, u64, 1024);

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    struct key_t key = {};

    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    opens.increment(key);
    return 0;
}
