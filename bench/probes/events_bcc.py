"""(f) BCC's consumer of the same event: python3-bpfcc, a perf buffer (`perf`) or a ring buffer
(`ring`), one line per record on stdout, JSON (`json`) or text (`text`), BURST records per call.
At exit it prints `sent=… dropped=… lost=… received=…` on stderr: what the program made, what the
buffer had no room for (counted in the program; `lost` is the perf buffer's own count) and what
this reader read. Usage: events_bcc.py perf|ring json|text PID BURST."""
import json
import signal
import sys

from bcc import BPF

mode, style, pid, burst = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
text = """
struct event { u32 pid; u32 seq; u64 ts; char comm[16]; };
BUFFER
BPF_ARRAY(counts, u64, 2);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != PID) return 0;
    u32 zero = 0, one = 1;
    u64 *sent = counts.lookup(&zero), *dropped = counts.lookup(&one);
    if (!sent || !dropped) return 0;
    for (int i = 0; i < BURST; i++) {
        struct event e = {};
        e.pid = pid;
        e.seq = *sent;
        *sent += 1;
        e.ts = bpf_ktime_get_ns();
        bpf_get_current_comm(e.comm, sizeof(e.comm));
        if (SUBMIT != 0)
            *dropped += 1;
    }
    return 0;
}
""".replace("PID", str(pid)).replace("BURST", str(burst))
if mode == "perf":
    text = text.replace("BUFFER", "BPF_PERF_OUTPUT(events);").replace("SUBMIT", "events.perf_submit(args, &e, sizeof(e))")
else:
    # 64 pages, 256 KiB, as the kprobe-run probe's ring buffer.
    text = text.replace("BUFFER", "BPF_RINGBUF_OUTPUT(events, 64);").replace("SUBMIT", "events.ringbuf_output(&e, sizeof(e), 0)")
b = BPF(text=text)
out = sys.stdout
received = lost = 0


def handle(data):
    global received
    received += 1
    event = b["events"].event(data)
    if style == "json":
        out.write(json.dumps({"pid": event.pid, "seq": event.seq, "ts": event.ts, "comm": event.comm.decode()}) + "\n")
    else:
        out.write("pid=%d seq=%d ts=%d comm=%s\n" % (event.pid, event.seq, event.ts, event.comm.decode()))


def count_lost(cpu, count):
    global lost
    lost += count


running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
if mode == "perf":
    # 64 pages per CPU, as kprobe-run's perf buffers.
    b["events"].open_perf_buffer(lambda cpu, data, size: handle(data), page_cnt=64, lost_cb=count_lost)
    poll = lambda: b.perf_buffer_poll(timeout=100)
else:
    b["events"].open_ring_buffer(lambda ctx, data, size: handle(data))
    poll = lambda: b.ring_buffer_poll(timeout=100)
print("attached", file=sys.stderr, flush=True)
while running:
    poll()
out.flush()
counts = b["counts"]
print(f"sent={counts[0].value} dropped={counts[1].value} lost={lost} received={received}", file=sys.stderr, flush=True)
