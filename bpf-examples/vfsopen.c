// vfsopen: kprobes on vfs_open and tcp_v4_connect that walk kernel structs (path -> dentry -> name,
// task -> real_parent -> tgid, sock -> destination port). It builds against the kernel's own headers
// (kheaders, /lib/modules/.../build) and, where a kernel only has BTF, against vmlinux.h:
// kprobe-run defines KPROBE_RUN_BTF when types come from BTF.
#ifdef KPROBE_RUN_BTF
#include "vmlinux.h"
#else
#include <linux/sched.h>
#include <linux/fs.h>
#include <net/sock.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

SEC("kprobe/vfs_open")
int BPF_KPROBE(trace_vfs_open, const struct path *path)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct task_struct *parent;
    struct dentry *dentry;
    const unsigned char *name;
    char filename[64];
    int ppid;

    bpf_probe_read_kernel(&dentry, sizeof(dentry), &path->dentry);
    bpf_probe_read_kernel(&name, sizeof(name), &dentry->d_name.name);
    bpf_probe_read_kernel_str(filename, sizeof(filename), name);
    bpf_probe_read_kernel(&parent, sizeof(parent), &task->real_parent);
    bpf_probe_read_kernel(&ppid, sizeof(ppid), &parent->tgid);
    bpf_printk("vfs_open %s pid %d ppid %d", filename, bpf_get_current_pid_tgid() >> 32, ppid);
    return 0;
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(trace_tcp_v4_connect, struct sock *sk)
{
    __u16 dport;

    bpf_probe_read_kernel(&dport, sizeof(dport), &sk->__sk_common.skc_dport);
    bpf_printk("tcp_v4_connect pid %d dport %d", bpf_get_current_pid_tgid() >> 32, bpf_ntohs(dport));
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
