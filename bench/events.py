"""(f) events per second: the same event (one record per getppid() of a generator process) read by
kprobe-run (ring buffer and perf buffer, json to a pipe), BCC's Python consumer (python3-bpfcc,
perf buffer and ring buffer, json lines) and bpftrace (printf, -f json), on this machine, one
after the other.

For each consumer: the highest offered rate from a doubling ladder that arrives without loss
("sustained"; a step that the generator itself cannot offer at the asked rate counts at the rate
it offered, and ends the ladder), and what arrives when the generator calls getppid() as fast as
it can ("saturation": received/offered, and received per second of generator time, which falls
when the consumer takes CPU time from the generator on this shared machine). A record counts as
received when its line reaches the harness through the pipe (it counts the generator's comm).
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = os.path.join(HERE, "probes")
COMM = b"kprgen"
LADDER = [25_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000]
# Long enough that a step offers several times what the largest buffer (8 MiB) holds at 200,000/s,
# so a step passes on the consumer's speed, not on the buffer's size.
SECONDS_PER_STEP = 4
SATURATION_CALLS = 2_000_000


class Counter:
    """Counts COMM in a stream as it arrives (a reader thread; carries a partial match over)."""

    def __init__(self, stream, ready=None):
        self.count = 0
        self.ready = ready
        self.seen = threading.Event()
        # The start of the stream, kept until the readiness pattern is seen (for error messages).
        self.head = b""
        self.thread = threading.Thread(target=self.run, args=(stream,), daemon=True)
        self.thread.start()

    def run(self, stream):
        tail = b""
        while True:
            chunk = stream.read1(1 << 16)
            if not chunk:
                break
            if self.ready and not self.seen.is_set():
                self.head += chunk
                if re.search(self.ready, self.head, re.M):
                    self.seen.set()
            # Every match in tail + chunk ends in chunk (the tail is shorter than COMM): none is
            # counted twice.
            data = tail + chunk
            self.count += data.count(COMM)
            tail = data[-(len(COMM) - 1):]


def consumers(bench):
    """name → (command with PID placeholder, readiness pattern, the stream it appears on, stop
    signal, env)."""
    probe = os.path.join(PROBES, "events.bpf.c")
    cache = bench.path("cache-events")
    kenv = bench.kenv(cache)
    kprobe = [bench.kprobe_run, "--format", "json", "-v", "--set", "targ_pid=PID"]
    # BCC compiles against the unpacked test-kernel headers, as in (a)-(c).
    bcc_env = dict(bench.env, BCC_KERNEL_SOURCE=bench.tree)
    return {
        "kprobe-run, ring buffer, json": (kprobe + [probe], rb"running (until|for)", "stderr", signal.SIGTERM, kenv),
        "kprobe-run, perf buffer, json": (kprobe + ["-D", "PERF_BUFFER", probe], rb"running (until|for)", "stderr", signal.SIGTERM, kenv),
        "BCC (python3-bpfcc), perf buffer": (["/usr/bin/python3", os.path.join(PROBES, "events_bcc.py"), "perf", "PID"],
                                             rb"^attached", "stderr", signal.SIGTERM, bcc_env),
        "BCC (python3-bpfcc), ring buffer": (["/usr/bin/python3", os.path.join(PROBES, "events_bcc.py"), "ring", "PID"],
                                             rb"^attached", "stderr", signal.SIGTERM, bcc_env),
        "bpftrace, printf, -f json": (["bpftrace", "-f", "json", os.path.join(PROBES, "events.bt"), "PID"],
                                      rb'"attached_probes"', "stdout", signal.SIGINT, bench.env),
    }


def one_run(bench, generator, consumer, calls, rate):
    """Starts the generator held, then the consumer on its pid; once attached, lets the generator
    run; returns (received, generator seconds)."""
    gen = subprocess.Popen([generator, str(calls), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    command, ready, stream, stop, env = consumer
    command = [part.replace("PID", str(gen.pid)) for part in command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    counter = Counter(proc.stdout, ready if stream == "stdout" else None)
    errors = Counter(proc.stderr, ready if stream == "stderr" else None)
    seen = counter.seen if stream == "stdout" else errors.seen
    deadline = time.monotonic() + 180
    while not seen.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            gen.kill()
            proc.kill()
            raise RuntimeError(f"consumer did not start: {' '.join(command)}\n{errors.head.decode(errors='replace')[-2000:]}")
    out, _ = gen.communicate(b"g")
    seconds = float(out.strip())
    time.sleep(1.0)
    proc.send_signal(stop)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    counter.thread.join(timeout=30)
    errors.thread.join(timeout=30)
    return counter.count, seconds


def measure(bench):
    generator = bench.path(COMM.decode())
    subprocess.run(["clang-14", "-O2", "-o", generator, os.path.join(PROBES, "events_gen.c")], check=True)
    bench.events = {}
    # The kprobe-run probe is compiled (and cached) before anything is timed.
    subprocess.run([bench.kprobe_run, "compile", os.path.join(PROBES, "events.bpf.c"), "-o", bench.path("events.o")],
                   env=bench.kenv(bench.path("cache-events")), check=True, capture_output=True)
    for name, consumer in consumers(bench).items():
        print(f"(f) {name}", file=sys.stderr)
        sustained, limited = 0, False
        for rate in LADDER:
            calls = rate * SECONDS_PER_STEP
            received, seconds = one_run(bench, generator, consumer, calls, rate)
            achieved = min(rate, calls / seconds)
            print(f"  {rate}/s asked, {achieved:.0f}/s offered: {received}/{calls} received", file=sys.stderr)
            if received < calls:
                break
            sustained = int(achieved)
            if achieved < 0.9 * rate:
                # The generator (not the consumer) is the limit from here on.
                limited = True
                break
        received, seconds = one_run(bench, generator, consumer, SATURATION_CALLS, 0)
        print(f"  saturation: {received}/{SATURATION_CALLS} in {seconds:.2f} s", file=sys.stderr)
        bench.events[name] = {"sustained": sustained, "limited": limited, "received": received, "offered": SATURATION_CALLS,
                              "seconds": seconds, "command": consumer[0]}


def markdown(bench):
    """The (f) targets and the table, for RESULTS.md."""
    e = bench.events
    ours = e["kprobe-run, ring buffer, json"]["sustained"]
    bcc = max(e["BCC (python3-bpfcc), perf buffer"]["sustained"], e["BCC (python3-bpfcc), ring buffer"]["sustained"])
    bpftrace = e["bpftrace, printf, -f json"]["sustained"]
    generator_limited = {name for name, r in e.items() if r["limited"]}

    def verdict(ratio, other, other_name):
        # A generator-limited figure is a lower bound of what that consumer keeps up with.
        other_limited = any(other_name in n and e[n]["sustained"] == other for n in generator_limited)
        if ours >= ratio * max(other, 1):
            return "not decided (the other's figure is generator-limited)" if other_limited else "met"
        if "kprobe-run, ring buffer, json" in generator_limited:
            return "not decided (kprobe-run kept up with the generator's top rate)"
        return "NOT met"

    lines = [
        "",
        "## Events per second (f)",
        "",
        __doc__.strip().replace("\n", " "),
        "",
        f"Ladder: {', '.join(f'{r:,}' for r in LADDER)} events/s, {SECONDS_PER_STEP} s each; saturation: "
        f"{SATURATION_CALLS:,} calls as fast as the generator runs. Probes: `bench/probes/events.bpf.c`, "
        "`events_bcc.py`, `events.bt`; generator `events_gen.c`.",
        "",
        "| target | result | measured |",
        "|---|---|---|",
        f"| (f) sustained without loss ≥ 10× BCC's Python consumer (json) | {verdict(10, bcc, 'BCC')} | {ours:,}/s vs {bcc:,}/s |",
        f"| (f) sustained without loss ≥ 2× bpftrace's | {verdict(2, bpftrace, 'bpftrace')} | {ours:,}/s vs {bpftrace:,}/s |",
        "",
        "| consumer | sustained without loss, events/s | saturation: received of offered | received per generator second |",
        "|---|---|---|---|",
    ]
    for name, r in e.items():
        lines.append(f"| {name} | {r['sustained']:,}{' (generator limit)' if r['limited'] else ''} | {r['received']:,} of {r['offered']:,} "
                     f"({100 * r['received'] / r['offered']:.1f}%) | {r['received'] / r['seconds']:,.0f} |")
    return lines
