"""(f) event throughput with BCC's Python consumer: one record per getppid(2) of process PID,
through a perf buffer or a ring buffer, each printed as a JSON line on stdout.

Usage: bcc_events.py perf|ring PID. Prints "attached" on stderr once attached; on SIGTERM prints
"dropped N lost M" on stderr (N: records the kernel could not write, counted in the probe; M: what
the perf buffer's lost callback reported) and exits."""
import signal
import sys

from bcc import BPF

mode, pid = sys.argv[1], int(sys.argv[2])
output = "BPF_PERF_OUTPUT(events);" if mode == "perf" else "BPF_RINGBUF_OUTPUT(events, 256);"
submit = "events.perf_submit(args, &e, sizeof(e))" if mode == "perf" else "events.ringbuf_output(&e, sizeof(e), 0)"
text = """
struct event {
    u32 pid;
    u32 cpu;
    u64 seq;
    char comm[16];
};
OUTPUT
BPF_ARRAY(counters, u64, 2);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != PID)
        return 0;
    struct event e = {};
    int seq_key = 0, dropped_key = 1;
    u64 *seq = counters.lookup(&seq_key);
    e.pid = pid;
    e.cpu = bpf_get_smp_processor_id();
    if (seq)
        e.seq = __sync_fetch_and_add(seq, 1);
    bpf_get_current_comm(e.comm, sizeof(e.comm));
    if (SUBMIT < 0) {
        u64 *dropped = counters.lookup(&dropped_key);
        if (dropped)
            __sync_fetch_and_add(dropped, 1);
    }
    return 0;
}
""".replace("OUTPUT", output).replace("SUBMIT", submit).replace("PID", str(pid))

bpf = BPF(text=text)
events = bpf["events"]
write = sys.stdout.write
lost = 0


def on_event(*args):
    e = events.event(args[-2])
    write('{"pid":%d,"cpu":%d,"seq":%d,"comm":"%s"}\n' % (e.pid, e.cpu, e.seq, e.comm.decode()))


def on_lost(count):
    global lost
    lost += count


if mode == "perf":
    events.open_perf_buffer(on_event, lost_cb=on_lost)
    poll = bpf.perf_buffer_poll
else:
    events.open_ring_buffer(on_event)
    poll = bpf.ring_buffer_poll
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("attached", file=sys.stderr, flush=True)
while running:
    poll(100)
sys.stdout.flush()
print(f"dropped {bpf['counters'][1].value} lost {lost}", file=sys.stderr, flush=True)
