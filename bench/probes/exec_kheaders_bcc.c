// The same probe in BCC's dialect.
#include <linux/sched.h>
#include <linux/fs.h>
#include <net/sock.h>

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    int tgid = 0;

    bpf_probe_read_kernel(&tgid, sizeof(tgid), &task->tgid);
    bpf_trace_printk("exec %d (variant VARIANT)\n", tgid);
    return 0;
}
