"""(f) BCC's consumer of the same event: python3-bpfcc, a perf buffer (`perf`) or a ring buffer
(`ring`), one JSON line per record on stdout. Usage: events_bcc.py perf|ring PID."""
import json
import signal
import sys

from bcc import BPF

mode, pid = sys.argv[1], int(sys.argv[2])
text = """
struct event { u32 pid; u64 ts; char comm[16]; };
BUFFER
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != PID) return 0;
    struct event e = {};
    e.pid = pid;
    e.ts = bpf_ktime_get_ns();
    bpf_get_current_comm(e.comm, sizeof(e.comm));
    SUBMIT
    return 0;
}
""".replace("PID", str(pid))
if mode == "perf":
    text = text.replace("BUFFER", "BPF_PERF_OUTPUT(events);").replace("SUBMIT", "events.perf_submit(args, &e, sizeof(e));")
else:
    text = text.replace("BUFFER", "BPF_RINGBUF_OUTPUT(events, 2048);").replace("SUBMIT", "events.ringbuf_output(&e, sizeof(e), 0);")
b = BPF(text=text)
out = sys.stdout


def handle(data):
    event = b["events"].event(data)
    out.write(json.dumps({"pid": event.pid, "ts": event.ts, "comm": event.comm.decode()}) + "\n")


running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
if mode == "perf":
    b["events"].open_perf_buffer(lambda cpu, data, size: handle(data), page_cnt=64)  # as kprobe-run's perf buffers
    poll = lambda: b.perf_buffer_poll(timeout=100)
else:
    b["events"].open_ring_buffer(lambda ctx, data, size: handle(data))
    poll = lambda: b.ring_buffer_poll(timeout=100)
print("attached", file=sys.stderr, flush=True)
while running:
    poll()
out.flush()
