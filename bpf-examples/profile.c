// profile: samples every CPU at 99 Hz (kprobe-run opens a cpu-clock perf event per CPU for
// SEC("perf_event")) and counts (process, kernel stack, user stack). At exit kprobe-run prints
// each stack symbolized, kernel frames from /proc/kallsyms and user frames from the process's
// ELF files; `--format folded` prints flamegraph.pl's input instead. With -p PID or -c COMMAND
// only that process is sampled (through kprobe_run_pid). The idle task (pid 0) is left out.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_STACK_DEPTH 127

// Fields ending in stack_id are looked up in the object's stack trace map by kprobe-run.
struct key_t {
    u32 pid;
    s32 kern_stack_id;
    s32 user_stack_id;
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 16384);
    __uint(key_size, sizeof(u32));
    __uint(value_size, MAX_STACK_DEPTH * sizeof(u64));
} stacks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct key_t);
    __type(value, u64);
} counts SEC(".maps");

// Set by kprobe-run from -p/-c before the program is loaded; 0 samples every process.
const volatile int kprobe_run_pid = 0;

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct key_t key = {};
    u64 one = 1, *count;

    if (pid == 0)
        return 0;
    if (kprobe_run_pid && pid != kprobe_run_pid)
        return 0;
    key.pid = pid;
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    key.kern_stack_id = bpf_get_stackid(ctx, &stacks, 0);
    key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);

    count = bpf_map_lookup_elem(&counts, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
