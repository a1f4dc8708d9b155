// The kernel-header probe of the benchmark (libbpf style, for kprobe-run and clang-14):
// the headers most probes include, a tracepoint, a read of a kernel struct.
#include <linux/sched.h>
#include <linux/fs.h>
#include <net/sock.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    int tgid = 0;

    bpf_probe_read_kernel(&tgid, sizeof(tgid), &task->tgid);
    bpf_printk("exec %d (variant VARIANT)", tgid);
    return 0;
}
