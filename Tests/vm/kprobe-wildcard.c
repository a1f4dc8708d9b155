// Compiled on the host against the test kernel's headers (Tests/IntegrationTests/VMAttachTests.swift)
// and attached in the VM with -a 'kprobe:vfs_*=count_calls': one program at every match.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} calls SEC(".maps");

SEC("kprobe")
int count_calls(void *ctx)
{
    __u32 zero = 0;
    __u64 *count = bpf_map_lookup_elem(&calls, &zero);

    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
