// openat (BCC dialect), for the arm64 device test: BCC's kprobe__sys_ convention on a kernel
// with syscall wrappers (__arm64_sys_openat), whose arguments the rewrite reads from the user
// registers the wrapper receives (PT_REGS_PARM1 of the context, then arm64's regs[0], regs[1]).
// One perf event per call: dfd (AT_FDCWD is -100) and the file name.
struct open_event_t {
    u32 pid;
    int dfd;
    char filename[64];
};

BPF_PERF_OUTPUT(events);

int kprobe__sys_openat(struct pt_regs *ctx, int dfd, const char __user *filename)
{
    struct open_event_t event = {};

    event.pid = bpf_get_current_pid_tgid() >> 32;
    event.dfd = dfd;
    bpf_probe_read_user_str(&event.filename, sizeof(event.filename), filename);
    events.perf_submit(ctx, &event, sizeof(event));
    return 0;
}
