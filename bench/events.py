"""(f) events per second: the same event (BURST records per getppid() of a generator process pinned
to one CPU, into a 256 KiB ring buffer or 256 KiB-per-CPU perf buffer) read by kprobe-run (ring
and perf buffer), BCC's Python consumer (python3-bpfcc, perf and ring buffer) and bpftrace (printf,
its perf buffer), json and text, written to /dev/null and to a pipe the harness reads, on this
machine, one after the other, every consumer measured the same way.

For each row: "sustained", the highest offered rate at which every record the program made
arrives, found by bisection (geometric, BISECTIONS steps of SECONDS_PER_STEP s each, between the
lowest rate tried and 1.5 times what the consumer received per second flat out, or what the
generator offers if less); a step passes when most of TRIALS runs at its rate lose nothing, so that
one moment without the CPU on this shared machine neither sinks nor makes a figure. When the
flat-out run itself loses nothing, that is the figure, marked as the generator's limit (a lower
bound of what the consumer keeps up with). "Flat out": the generator as fast as it goes for 2 s,
with what the kernel dropped (no room in the buffer: a counter in the probe; bpftrace's own lost
count), what the consumer lost (made − dropped − received) and the consumer's CPU time per record
it received (user + system, all its threads). "Made" is the program's own count (kprobe-run's
globals read with bpftool, the BCC program's array, bpftrace's @calls × BURST), not the
generator's calls: the kernel now and then skips a call's program here. Received means a line that
reached the harness through the pipe (it counts the generator's comm), or, to /dev/null, what the
consumer says it read (kprobe-run -v, the BCC script's count); bpftrace to /dev/null cannot be
counted and has no row.

bpftrace 0.17 opens its perf buffer with wakeup_events = 1: every record raises a wake-up (an
irq_work interrupt) on the traced task's CPU, which holds this generator to the flat-out rate in
bpftrace's rows (about 140,000 records/s on this machine when idle) whatever bpftrace's own
speed, and no option of bpftrace 0.17 changes it (BPFTRACE_PERF_RB_PAGES sizes the buffer only).
That rate is then the most bpftrace can receive of this event here, so the "≥ 2× bpftrace" target
compares against it; its CPU time per record says how fast its reader would be without that limit.
"""
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = os.path.join(HERE, "probes")
F_SETPIPE_SZ = 1031
COMM = b"kprgen"
# Records per getppid(): one CPU's syscalls then produce more records than one syscall each.
BURST = 4
SECONDS_PER_STEP = 2.0
BISECTIONS = 6
# Runs per step of the bisection; the majority decides.
TRIALS = 3
LOWEST_RATE = 10_000
SATURATION_SECONDS = 2.0


class Reader:
    """Counts COMM in a stream as it arrives (a reader thread; carries a partial match over),
    keeps the stream's start (until `ready` is seen) and its last bytes."""

    def __init__(self, stream, ready=None, watch_lost=False):
        self.count = 0
        self.ready = ready
        self.lost_total = 0
        self.watch_lost = watch_lost
        self.seen = threading.Event()
        self.head = b""
        self.last = b""
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
            if self.watch_lost:
                self.lost_events(self.last[-100:], chunk)
            self.last = self.last[-(1 << 14):] + chunk

    def lost_events(self, tail, chunk):
        """bpftrace's own count of what its perf buffer dropped, in either format."""
        for match in re.finditer(rb'Lost (\d+) events|"lost_events", "data": \{"events": (\d+)\}', tail + chunk):
            if match.end() > len(tail):
                self.lost_total += int(match.group(1) or match.group(2))


class Consumer:
    def __init__(self, name, command, ready, stream, stop, env, counts, received=None):
        """`command` has PID for the generator's pid; `ready` appears on `stream` once attached;
        `counts(stdout_reader, stderr_tail)` → (records the program made, kernel drops), read
        once the generator is done and the consumer still runs; `received(stderr)` → what the
        consumer says it read (for /dev/null), None when it cannot say."""
        self.name, self.command, self.ready, self.stream, self.stop, self.env = name, command, ready, stream, stop, env
        self.counts, self.received = counts, received


def bpftool_json(*arguments):
    return json.loads(subprocess.run(["bpftool", "-j"] + list(arguments), check=True, capture_output=True).stdout or b"[]")


def kprobe_counts():
    """The probe's `sent` and `dropped` globals, read with bpftool from the newest program called
    on_getppid while kprobe-run runs (so they count to /dev/null too)."""
    programs = bpftool_json("prog", "show", "name", "on_getppid")
    program = max(programs if isinstance(programs, list) else [programs], key=lambda p: p["id"])
    for map_id in program.get("map_ids", []):
        if bpftool_json("map", "show", "id", str(map_id))["name"].endswith(".bss"):
            fields = {}
            for field in bpftool_json("map", "dump", "id", str(map_id))[0]["formatted"]["value"][".bss"]:
                fields.update(field)
            return fields["sent"], fields["dropped"]
    raise RuntimeError("no .bss map on program on_getppid")


def kprobe_received(err):
    return sum(int(n) for n in re.findall(rb"read (\d+) record\(s\) from 'events'", err))


def bpftrace_counts(reader):
    """`@calls` (one per call, printed at exit) × BURST, and bpftrace's own lost count."""
    match = re.search(rb'"@calls": (\d+)|@calls: (\d+)', reader.last)
    return (int(match.group(1) or match.group(2)) * BURST if match else None), reader.lost_total


def bcc_stats(err):
    match = re.search(rb"sent=(\d+) dropped=(\d+) lost=(\d+) received=(\d+)", err)
    return [int(n) for n in match.groups()] if match else None


def consumers(bench):
    probe = os.path.join(PROBES, "events.bpf.c")
    kenv = bench.kenv(bench.path("cache-events"))
    # BCC compiles against the unpacked test-kernel headers, as in (a)-(c).
    bcc_env = dict(bench.env, BCC_KERNEL_SOURCE=bench.tree)
    script = bench.path("events.bt")
    with open(os.path.join(PROBES, "events.bt")) as source, open(script, "w") as out:
        out.write(source.read().replace("BURST", str(BURST)))
    rows = []
    for style in ["json", "text"]:
        kprobe = [bench.kprobe_run, "--format", style, "-v", "--set", "targ_pid=PID", "--set", f"burst={BURST}"]
        for buffer, extra in [("ring buffer", []), ("perf buffer", ["-D", "PERF_BUFFER"])]:
            rows.append(Consumer(f"kprobe-run, {buffer}, {style}", kprobe + extra + [probe], rb"running (until|for)", "stderr",
                                 signal.SIGTERM, kenv, lambda out, err: kprobe_counts(), kprobe_received))
        for buffer, mode in [("perf buffer", "perf"), ("ring buffer", "ring")]:
            rows.append(Consumer(f"BCC (python3-bpfcc), {buffer}, {style}",
                                 ["/usr/bin/python3", os.path.join(PROBES, "events_bcc.py"), mode, style, "PID", str(BURST)],
                                 rb"^attached", "stderr", signal.SIGTERM, bcc_env,
                                 lambda out, err: (lambda s: s and (s[0], s[1] + s[2]))(bcc_stats(err)),
                                 lambda err: (lambda s: s and s[3])(bcc_stats(err))))
        rows.append(Consumer(f"bpftrace, printf, {style}", ["bpftrace"] + (["-f", "json"] if style == "json" else []) + [script, "PID"],
                             rb'"attached_probes"|^Attaching', "stdout", signal.SIGINT, bench.env,
                             lambda out, err: bpftrace_counts(out)))
    return rows


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_to(cpu):
    return lambda: os.sched_setaffinity(0, {cpu})


def one_run(generator, consumer, sink, calls, rate, limit):
    """Starts the generator held (pinned to the last CPU), then the consumer on its pid; once
    attached, lets the generator make `calls` calls at `rate` records/s (0: flat out) for at most
    `limit` seconds. Returns a dict: offered (records/s), sent, dropped, received, consumer_lost."""
    gen = subprocess.Popen([generator, str(calls), str(rate / BURST), str(limit)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           preexec_fn=pin_to(os.cpu_count() - 1))
    command = [part.replace("PID", str(gen.pid)) for part in consumer.command]
    stdout = subprocess.PIPE if sink == "pipe" else subprocess.DEVNULL
    # bpftrace says it attached on stdout: to /dev/null it has no row (see the module's text).
    proc = subprocess.Popen(command, env=consumer.env, stdout=stdout, stderr=subprocess.PIPE)
    out = None
    if sink == "pipe":
        # 1 MiB rather than 64 KiB: a reader that loses the CPU for a moment does not stall the
        # consumer at once (alike for every consumer).
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 1 << 20)
        out = Reader(proc.stdout, consumer.ready if consumer.stream == "stdout" else None, consumer.name.startswith("bpftrace"))
    err = Reader(proc.stderr, consumer.ready if consumer.stream == "stderr" else None)
    seen = out.seen if consumer.stream == "stdout" else err.seen
    deadline = time.monotonic() + 180
    while not seen.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            gen.kill()
            proc.kill()
            raise RuntimeError(f"consumer did not start: {' '.join(command)}\n{err.head.decode(errors='replace')[-2000:]}")
    cpu_before = cpu_seconds(proc.pid)
    answer, _ = gen.communicate(b"g")
    seconds, calls = float(answer.split()[0]), int(answer.split()[1])
    # Time to drain what is queued before the stop signal.
    time.sleep(1.0)
    cpu = cpu_seconds(proc.pid) - cpu_before
    counted = consumer.counts(None, None) if consumer.name.startswith("kprobe-run") else None
    proc.send_signal(consumer.stop)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for reader in [out, err]:
        if reader:
            reader.thread.join(timeout=30)
    counted = counted or consumer.counts(out, err.last)
    received = out.count if out else consumer.received(err.last)
    if not counted or counted[0] is None:
        raise RuntimeError(f"{consumer.name}: no counts at exit\n{err.last.decode(errors='replace')[-2000:]}")
    # The program's own count: the kernel skips a call's program now and then on this machine
    # (about 1% of calls in some runs), which is nobody's loss.
    sent, dropped = counted
    return {"offered": calls * BURST / seconds, "sent": sent, "dropped": dropped, "received": received,
            "consumer_lost": sent - dropped - received, "seconds": seconds, "cpu": cpu}


def measure_row(generator, consumer, sink):
    saturation = one_run(generator, consumer, sink, 10 ** 12, 0, SATURATION_SECONDS)
    top = saturation["offered"]
    log = f"  {consumer.name} to {sink}: flat out {top:,.0f}/s, received {saturation['received']:,}/{saturation['sent']:,}"
    print(log, file=sys.stderr)
    row = {"saturation": saturation, "limited": False, "steps": []}
    if saturation["received"] == saturation["sent"]:
        row["sustained"], row["limited"] = top, True
        return row
    # No consumer keeps up for long with more than it reads flat out: the bracket's top is a
    # little above that (or what the generator offers, if less), so the steps land near the answer.
    low, high, best = LOWEST_RATE, min(top, 1.5 * saturation["received"] / saturation["seconds"]), 0
    for step in range(BISECTIONS + 1):
        # The lowest rate first: a consumer that loses even there has no sustained figure.
        rate = low if step == 0 else (low * high) ** 0.5
        calls = max(1000, int(rate * SECONDS_PER_STEP / BURST))
        # A generator that cannot offer the rate stops at twice the step's time. A rate passes
        # when most of TRIALS runs lose nothing (stopping once that is decided): on this shared
        # machine a consumer loses the CPU now and then for longer than a 256 KiB buffer lasts,
        # and one run says little about how fast it reads.
        passed = failed = 0
        offered = []
        while passed <= TRIALS // 2 and failed <= TRIALS // 2:
            result = one_run(generator, consumer, sink, calls, rate, 2 * SECONDS_PER_STEP)
            # The generator may not reach the asked rate: the step counts at the rate it offered.
            offered.append(min(rate, result["offered"]))
            if result["received"] == result["sent"]:
                passed += 1
            else:
                failed += 1
            lost = result["sent"] - result["received"]
            print(f"    {rate:,.0f}/s asked, {offered[-1]:,.0f}/s offered: {'no loss' if not lost else f'lost {lost:,}'}",
                  file=sys.stderr)
        ok = passed > failed
        row["steps"].append((rate, min(offered), ok))
        if ok:
            best = max(best, min(offered))
            low = rate
        elif step == 0:
            break
        else:
            high = rate
    row["sustained"] = best
    return row


def measure(bench):
    generator = bench.path(COMM.decode())
    subprocess.run(["clang-14", "-O2", "-o", generator, os.path.join(PROBES, "events_gen.c")], check=True)
    bench.events = {}
    # The consumers' figures depend on what else runs on the machine: the report says how busy it was.
    bench.events_load = [os.getloadavg()[0]]
    # The kprobe-run probe is compiled (and cached) before anything is timed.
    for defines in [[], ["-D", "PERF_BUFFER"]]:
        subprocess.run([bench.kprobe_run, "compile"] + defines + [os.path.join(PROBES, "events.bpf.c"), "-o", bench.path("events.o")],
                       env=bench.kenv(bench.path("cache-events")), check=True, capture_output=True)
    for consumer in consumers(bench):
        for sink in ["/dev/null", "pipe"]:
            if sink == "/dev/null" and consumer.received is None:
                continue
            print(f"(f) {consumer.name} to {sink}", file=sys.stderr)
            bench.events[(consumer.name, sink)] = measure_row(generator, consumer, sink)
            bench.events[(consumer.name, sink)]["command"] = consumer.command
    bench.events_load.append(os.getloadavg()[0])


def markdown(bench):
    """The (f) targets and the table, for RESULTS.md."""
    e = bench.events

    def best(prefix, style, sinks=("pipe",)):
        rows = [(r["sustained"], r["limited"], name, sink) for (name, sink), r in e.items()
                if name.startswith(prefix) and name.endswith(", " + style) and sink in sinks]
        return max(rows) if rows else (0, False, None, None)

    def cpu_rate(row):
        """Records per CPU-second of the consumer, flat out (0: not measured)."""
        s = row["saturation"]
        return s["received"] / s["cpu"] if s.get("cpu") else 0

    ours, ours_limited, _, _ = best("kprobe-run, ring buffer", "json")
    lines = ["", "## Events per second (f)", "", __doc__.strip().replace("\n\n", "\0").replace("\n", " ").replace("\0", "\n\n")
             .replace("BURST", str(BURST)).replace("BISECTIONS", str(BISECTIONS)).replace("TRIALS", str(TRIALS))
             .replace("SECONDS_PER_STEP", f"{SECONDS_PER_STEP:g}"), "",
             f"Burst {BURST} records per call; lowest rate tried {LOWEST_RATE:,}/s; flat out: {SATURATION_SECONDS:g} s. "
             "Probes: `bench/probes/events.bpf.c`, `events_bcc.py`, `events.bt`; generator `events_gen.c`. The targets "
             "compare json to a pipe (every line reaches a reader), each consumer's better buffer. Load average "
             f"(1 minute) when this section started and ended: {' and '.join(f'{x:.1f}' for x in getattr(bench, 'events_load', []))} "
             f"on {os.cpu_count()} CPUs.", "",
             "| target | result | measured |", "|---|---|---|"]
    for label, prefix, ratio in [("≥ 10× BCC's Python consumer", "BCC", 10), ("≥ 2× bpftrace's", "bpftrace", 2)]:
        other, other_limited, name, sink = best(prefix, "json")
        note = ""
        if ours >= ratio * max(other, 1):
            verdict = "met"
            if other_limited:
                # The generator's limit under that consumer is the most of this event it can receive.
                verdict = "met, against the most this event reaches while the other traces it (its generator limit)"
                reader = cpu_rate(e[(name, sink)])
                if reader:
                    note = (f"; its reader used {1e6 / reader:.1f} µs of CPU per record, {reader:,.0f}/s on a CPU of its own: "
                            f"kprobe-run {ours / reader:.1f}× that")
        elif ours_limited:
            verdict = "not decided (kprobe-run kept up with the generator's top rate)"
        else:
            verdict = "NOT met"
        lines.append(f"| (f) sustained without loss {label}, json | {verdict} | {ours:,.0f}/s vs {other:,.0f}/s = "
                     f"{ours / max(other, 1):.1f}×{note} |")
    lines += ["", "Flat out, received/s is what the consumer read per second of the generator's run: with "
                  "256 KiB buffers, about its throughput when records come faster than it reads them; CPU per record "
                  "is the consumer's CPU time over that run divided by what it received.", "",
              "| consumer | output | sustained without loss, records/s | flat out: offered/s | flat out: received/s | "
              "received of made | kernel drops | consumer losses | CPU µs per record |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, sink), r in e.items():
        s = r["saturation"]
        rate = cpu_rate(r)
        lines.append(f"| {name} | {sink} | {r['sustained']:,.0f}{' (generator limit)' if r['limited'] else ''} | "
                     f"{s['offered']:,.0f} | {s['received'] / s['seconds']:,.0f} | {s['received']:,} of {s['sent']:,} "
                     f"({100 * s['received'] / max(s['sent'], 1):.1f}%) | {s['dropped']:,} | {s['consumer_lost']:,} | "
                     f"{(f'{1e6 / rate:.2f}' if rate else '–')} |")
    return lines


def replace_section(path, lines):
    """Replaces the (f) section of an existing report (`bench.py --only events`)."""
    with open(path) as report:
        text = report.read()
    start = text.find("\n## Events per second (f)")
    end = text.find("\n## ", start + 1) if start >= 0 else -1
    section = "\n".join(lines)
    if start < 0:
        text = text.rstrip("\n") + "\n" + section + "\n"
    else:
        text = text[:start] + section + (text[end:] if end >= 0 else "\n")
    with open(path, "w") as report:
        report.write(text)
