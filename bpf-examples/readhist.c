// readhist: a log2 histogram of the byte counts read(2) returns, in libbpf-tools' shape:
// a map whose value is `struct hist { __u32 slots[N]; }` prints as a histogram (slot k counts
// values in [2^k, 2^(k+1) - 1], slot 0 also counts 0). Try: kprobe-run readhist.c -i 1 -d 3
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SLOTS 32

struct hist {
    __u32 slots[MAX_SLOTS];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct hist);
} read_bytes SEC(".maps");

static __always_inline u32 log2_floor(u64 v)
{
    u32 r = 0;

    for (int i = 0; i < 64 && v > 1; i++) {
        v >>= 1;
        r++;
    }
    return r;
}

SEC("tracepoint/syscalls/sys_exit_read")
int on_read_exit(struct trace_event_raw_sys_exit *ctx)
{
    u32 zero = 0, slot;
    struct hist *h;

    if (ctx->ret <= 0)
        return 0;
    h = bpf_map_lookup_elem(&read_bytes, &zero);
    if (!h)
        return 0;
    slot = log2_floor(ctx->ret);
    if (slot >= MAX_SLOTS)
        slot = MAX_SLOTS - 1;
    __sync_fetch_and_add(&h->slots[slot], 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
