// readsize (BCC dialect): a log2 histogram of the byte counts read(2) returns, system-wide.
// kprobe-run prints the histogram when the run ends.
BPF_HISTOGRAM(bytes);

TRACEPOINT_PROBE(syscalls, sys_exit_read)
{
    if (args->ret > 0)
        bytes.increment(bpf_log2l(args->ret));
    return 0;
}
