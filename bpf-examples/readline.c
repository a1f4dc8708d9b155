// readline: every line typed into an interactive bash, caught as readline() returns (uretprobe).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("uretprobe//bin/bash:readline")
int BPF_KRETPROBE(bash_readline, const void *line)
{
    char text[80];

    if (!line)
        return 0;
    bpf_probe_read_user_str(text, sizeof(text), line);
    bpf_printk("bash pid %d read: %s", bpf_get_current_pid_tgid() >> 32, text);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
