// pythongc-style (BCC dialect): how long each of Python's garbage collections takes and how much
// it frees, from the interpreter's own USDT probes (Debian's python3 has them). Attach both
// programs to a Python process; the binary is found among the files it maps:
//   kprobe-run bpf-examples/bcc/pygc.c -p "$(pgrep -n python3)" \
//       -a usdt:python:gc__start=on_gc_start -a usdt:python:gc__done=on_gc_done
#include <uapi/linux/ptrace.h>

struct gc_event {
    u32 pid;
    u32 generation;
    u64 elapsed_ns;
    u64 collected;
};

BPF_HASH(started, u32, struct gc_event);
BPF_PERF_OUTPUT(collections);

int on_gc_start(struct pt_regs *ctx)
{
    struct gc_event event = {};
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    int generation = 0;

    bpf_usdt_readarg(1, ctx, &generation);
    event.pid = pid;
    event.generation = generation;
    event.elapsed_ns = bpf_ktime_get_ns();
    started.update(&pid, &event);
    return 0;
}

int on_gc_done(struct pt_regs *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct gc_event *event = started.lookup(&pid);
    long collected = 0;

    if (!event)
        return 0;
    bpf_usdt_readarg(1, ctx, &collected);
    event->elapsed_ns = bpf_ktime_get_ns() - event->elapsed_ns;
    event->collected = collected;
    collections.perf_submit(ctx, event, sizeof(*event));
    started.delete(&pid);
    return 0;
}
