// execsnoop (BCC dialect): one perf event per exec, with the parent's pid read through the
// task struct (BCC turns task->real_parent->tgid into kernel reads) and the file name from
// the tracepoint's __data_loc field. kprobe-run prints each event decoded from its BTF type.
#include <linux/sched.h>

struct exec_event_t {
    u32 pid;
    u32 ppid;
    char comm[TASK_COMM_LEN];
    char filename[128];
};

BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct exec_event_t event = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();

    event.pid = bpf_get_current_pid_tgid() >> 32;
    event.ppid = task->real_parent->tgid;
    bpf_get_current_comm(&event.comm, sizeof(event.comm));
    bpf_probe_read_kernel_str(&event.filename, sizeof(event.filename),
                              (void *)args + (args->data_loc_filename & 0xFFFF));
    events.perf_submit(args, &event, sizeof(event));
    return 0;
}
