#!/usr/bin/python3
"""kprobe-run against BCC, bpftrace and the clang-14 CLI, side by side on this machine.

Measures, with medians over several runs:
  (a) a cached re-run, start to attached;
  (b) a new probe with the headers already cached (start to attached, and compile only);
  (c) a first run, including the header unpack and the precompiled-header build;
  (d) the header unpack alone (`headers extract`, and `headers fetch` into an empty cache), against tar -xJf;
  (e) peak RSS;
  (f) events per second without loss and at saturation (bench/events.py);
and writes bench/RESULTS.md. Run through `make bench` (as root: probes are loaded).

"Start to attached" is the time from starting the process to its readiness line on stderr
(kprobe-run -v prints "running ..." once every program is attached; bench/probes/bcc_run.py
prints "attached" once BPF() returns), or, for bpftrace, to its first event while the harness
starts /bin/true every few milliseconds. The process is then stopped with SIGTERM (SIGINT for
bpftrace) and that part is not timed.
"""
import argparse
import datetime
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import events

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROBES = os.path.join(HERE, "probes")


BCC_DIALECT = "kprobe-run, BCC's program text, new probe (BCC rewriter, then compiler worker)"


class Failed(Exception):
    pass


def start_to_ready(command, env, pattern, stream="stderr", trigger=False, timeout=180.0, stop=signal.SIGTERM,
                   transcript=None):
    """Seconds from starting `command` to the first line of `stream` matching `pattern`; with a
    list for `transcript`, what `stream` said until then is appended to it.

    trace_pipe has one reader at a time: a run that finds it taken (another tracer on the
    machine) is repeated after a pause rather than counted."""
    for _ in range(30):
        try:
            return start_to_ready_once(command, env, pattern, stream, trigger, timeout, stop, transcript)
        except Failed as failure:
            if "Device or resource busy" not in str(failure):
                raise
            time.sleep(2)
    raise Failed(f"trace_pipe stayed busy (another tracer is running): {' '.join(command)}")


def start_to_ready_once(command, env, pattern, stream, trigger, timeout, stop, transcript=None):
    expression = re.compile(pattern)
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    watched = process.stdout if stream == "stdout" else process.stderr
    others = [process.stderr] if stream == "stdout" else []
    ready = threading.Event()
    if trigger:
        def poke():
            while not ready.is_set():
                subprocess.run(["/bin/true"])
                time.sleep(0.005)
        threading.Thread(target=poke, daemon=True).start()
    selector = selectors.DefaultSelector()
    for pipe in [watched] + others:
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe, selectors.EVENT_READ)
    buffers = {pipe: b"" for pipe in [watched] + others}
    elapsed = None
    try:
        while elapsed is None:
            left = started + timeout - time.monotonic()
            if left <= 0:
                raise Failed(f"no readiness line after {timeout:.0f} s: {' '.join(command)}")
            events = selector.select(left)
            for key, _ in events:
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if key.fileobj is watched:
                        process.wait()
                        text = buffers[watched].decode(errors="replace") + b"".join(
                            buffers[p] for p in others).decode(errors="replace")
                        raise Failed(f"exited ({process.returncode}) before it was ready: {' '.join(command)}\n{text[-2000:]}")
                    continue
                buffers[key.fileobj] += chunk
                if key.fileobj is watched and any(expression.search(line) for line in
                                                  buffers[watched].decode(errors="replace").splitlines()):
                    elapsed = time.monotonic() - started
                    if transcript is not None:
                        transcript.append(buffers[watched].decode(errors="replace"))
    finally:
        ready.set()
        selector.close()
        if process.poll() is None:
            os.killpg(process.pid, stop)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return elapsed


def timed(command, env=None, cwd=None):
    started = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise Failed(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def peak_rss_kib(command, env=None, expected=(0,)):
    """GNU time's maximum resident set size: the largest of the process and the children it waited for."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + command, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if result.returncode not in expected:
            raise Failed(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr.decode(errors='replace')[-2000:]}")
        return int(out.read().strip().splitlines()[-1])


class Bench:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.kprobe_run = os.path.abspath(args.kprobe_run)
        self.archive = os.path.abspath(args.archive)
        self.work = tempfile.mkdtemp(prefix="kprobe-run-bench.", dir=args.work_root)
        self.counter = 0
        self.results = {}
        self.commands = {}
        self.notes = []
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KPROBE_RUN_", "BCC_", "BPFTRACE_"))}
        self.env = base
        # One unpacked tree for BCC (its BCC_KERNEL_SOURCE) and the clang-14 CLI.
        self.tree = self.path("tree")
        os.makedirs(self.tree)
        subprocess.run(["tar", "-xJf", self.archive, "-C", self.tree], check=True)
        self.libbpf = self.path("libbpf-include")
        os.makedirs(self.libbpf)
        os.symlink("/usr/include/bpf", os.path.join(self.libbpf, "bpf"))
        self.warm_cache = self.path("cache-warm")

    def path(self, name):
        return os.path.join(self.work, name)

    def fresh(self, name):
        self.counter += 1
        return self.path(f"{name}-{self.counter}")

    def variant(self, template, tag, suffix):
        with open(os.path.join(PROBES, template)) as source:
            text = source.read().replace("VARIANT", tag)
        path = self.fresh("probe") + suffix
        with open(path, "w") as out:
            out.write(text)
        return path

    def hello_variant(self, tag):
        with open(os.path.join(REPO, "bpf-examples", "hello.c")) as source:
            text = source.read().replace("hello from %s", f"hello ({tag}) from %s")
        path = self.fresh("hello") + ".c"
        with open(path, "w") as out:
            out.write(text)
        return path

    def kenv(self, cache):
        return dict(self.env, KPROBE_RUN_CACHE_DIR=cache)

    def record(self, key, samples, command):
        self.results[key] = samples
        self.commands[key] = command
        print(f"  {key}: median {statistics.median(samples) * 1000:.0f} ms over {len(samples)} runs", file=sys.stderr)

    @staticmethod
    def wait_for_precompiled_headers(cache, count, timeout=300.0):
        """Until `count` precompiled headers exist in `cache` and no build's temporary is left."""
        directory = os.path.join(cache, "pch")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = os.listdir(directory) if os.path.isdir(directory) else []
            if sum(n.endswith(".pch") for n in names) >= count and not any(".tmp" in n for n in names):
                return
            time.sleep(0.2)
        raise Failed(f"no precompiled header appeared in {directory} within {timeout:.0f} s")

    def kprobe_run_ready(self, probe, cache, headers=True, transcript=None):
        command = [self.kprobe_run, probe, "-v"] + (["--headers", self.archive] if headers else [])
        return start_to_ready(command, self.kenv(cache), r"kprobe-run: running (until|for)", transcript=transcript), command

    def bcc_ready(self, probe, source_tree):
        command = ["/usr/bin/python3", os.path.join(PROBES, "bcc_run.py"), probe]
        return start_to_ready(command, dict(self.env, BCC_KERNEL_SOURCE=source_tree), r"^attached$"), command

    def bpftrace_ready(self):
        command = ["bpftrace", os.path.join(PROBES, "hello.bt")]
        return start_to_ready(command, self.env, r"hello from", stream="stdout", trigger=True, stop=signal.SIGINT), command

    def clang_command(self, probe, output):
        tree, arch = self.tree, "arch/x86"
        includes = [f"{tree}/{arch}/include", f"{tree}/{arch}/include/generated", f"{tree}/include",
                    f"{tree}/{arch}/include/uapi", f"{tree}/{arch}/include/generated/uapi", f"{tree}/include/uapi",
                    f"{tree}/include/generated/uapi", self.libbpf]
        workaround = self.path("asm_workarounds.h")
        if not os.path.exists(workaround):
            with open(workaround, "w") as out:
                out.write("#include <linux/compiler_types.h>\n#undef asm_volatile_goto\n"
                          "#define asm_volatile_goto(x...) asm volatile(\"invalid\")\n#undef asm_inline\n#define asm_inline asm\n")
        flags = ["-nostdinc"] + ["-I" + d for d in includes] + [
            "-include", f"{tree}/include/linux/kconfig.h", "-include", workaround,
            "-D__KERNEL__", "-D__BPF_TRACING__", "-D__TARGET_ARCH_x86", "-DKBUILD_MODNAME=\"bench\"",
            "-Wno-unknown-warning-option", "-Wno-address-of-packed-member", "-Wno-gnu-variable-sized-type-not-at-end",
            "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types", "-Wno-unused-value", "-Wno-tautological-compare"]
        # As BCC and kprobe-run do: parse for the host (its asm and layouts), generate BPF.
        clang = " ".join(["clang-14", "-target", "x86_64-linux-gnu", "-O2", "-g", "-emit-llvm", "-c"] + flags
                         + [probe, "-o", "-"])
        return ["sh", "-c", f"{clang} | llc-14 -march=bpf -filetype=obj -o {output}"]

    # (a) and the warm-up the others need.
    def cached_rerun(self):
        print("(a) cached re-run, start to attached", file=sys.stderr)
        probe = self.variant("exec_kheaders.c", "a", ".c")
        self.cached_probe = probe
        self.kprobe_run_ready(probe, self.warm_cache)
        samples = []
        for _ in range(self.runs):
            elapsed, command = self.kprobe_run_ready(probe, self.warm_cache)
            samples.append(elapsed)
        self.record("a.kprobe-run.kheaders", samples, command)

        hello = os.path.join(REPO, "bpf-examples", "hello.c")
        self.kprobe_run_ready(hello, self.warm_cache, headers=False)
        samples = []
        for _ in range(self.runs):
            elapsed, command = self.kprobe_run_ready(hello, self.warm_cache, headers=False)
            samples.append(elapsed)
        self.record("a.kprobe-run.btf", samples, command)

        bcc_probe = self.variant("exec_kheaders_bcc.c", "a", ".c")
        samples = []
        for _ in range(self.runs):
            elapsed, command = self.bcc_ready(bcc_probe, self.tree)
            samples.append(elapsed)
        self.record("a.bcc.kheaders", samples, command)

        samples = []
        for _ in range(self.runs):
            elapsed, command = self.bpftrace_ready()
            samples.append(elapsed)
        self.record("a.bpftrace.btf", samples, command)

    # (b) a probe never compiled before, with headers (and the precompiled header) in the cache.
    def new_probe(self):
        print("(b) new probe, headers cached", file=sys.stderr)
        # The first compile of an include block builds its precompiled header in the background
        # (see PrecompiledHeaders); (a) started it, (b) measures with it.
        self.wait_for_precompiled_headers(self.warm_cache, 1)
        samples = []
        for i in range(self.runs):
            elapsed, command = self.kprobe_run_ready(self.variant("exec_kheaders.c", f"b{i}", ".c"), self.warm_cache)
            samples.append(elapsed)
        self.record("b.kprobe-run.kheaders", samples, command)

        # BCC's own program text (the BCC twin), rewritten by kprobe-run-bcc, headers cached.
        self.kprobe_run_ready(self.variant("exec_kheaders_bcc.c", "bw", ".c"), self.warm_cache)
        self.wait_for_precompiled_headers(self.warm_cache, 2)
        samples = []
        for i in range(self.runs):
            elapsed, command = self.kprobe_run_ready(self.variant("exec_kheaders_bcc.c", f"bd{i}", ".c"), self.warm_cache)
            samples.append(elapsed)
        self.record("b.kprobe-run-bcc-dialect.kheaders", samples, command)

        samples = []
        for i in range(self.runs):
            command = [self.kprobe_run, "compile", self.variant("exec_kheaders.c", f"bc{i}", ".c"),
                       "--headers", self.archive, "-o", self.fresh("out") + ".o"]
            samples.append(timed(command, self.kenv(self.warm_cache)))
        self.record("b.kprobe-run-compile.kheaders", samples, command)

        samples = []
        for i in range(self.runs):
            command = self.clang_command(self.variant("exec_kheaders.c", f"cl{i}", ".c"), self.fresh("out") + ".o")
            samples.append(timed(command, self.env))
        self.record("b.clang-14.kheaders", samples, command)

        samples = []
        for i in range(self.runs):
            elapsed, command = self.kprobe_run_ready(self.hello_variant(f"b{i}"), self.warm_cache, headers=False)
            samples.append(elapsed)
        self.record("b.kprobe-run.btf", samples, command)

    # (c) nothing cached: unpack (or vmlinux.h generation), compile, attach. As a user meets it:
    # on a disk that did not just delete thousands of files. No tree of this benchmark is deleted
    # before this section ends ((d) keeps its trees until the end): ext4 scans past recently
    # deleted inodes when it allocates new ones (perf: find_inode_bit/recently_deleted, 43% of a
    # first run's samples right after trees were deleted), which a real first run does not pay.
    # Other processes on a shared machine may still have deleted files meanwhile.
    def first_run(self):
        print("(c) first run", file=sys.stderr)
        probe = self.variant("exec_kheaders.c", "c", ".c")
        trees = []
        samples = []
        transcripts = []
        for _ in range(self.runs):
            cache = self.fresh("cache-first")
            trees.append(cache)
            elapsed, command = self.kprobe_run_ready(probe, cache, transcript=transcripts)
            samples.append(elapsed)
        self.record("c.kprobe-run.kheaders", samples, command)
        self.first_run_parts = first_run_breakdown(samples, transcripts)
        if self.first_run_parts:
            print("  c.kprobe-run.kheaders medians: " + ", ".join(f"{key} {value:.0f} ms" for key, value in self.first_run_parts.items()),
                  file=sys.stderr)

        hello = os.path.join(REPO, "bpf-examples", "hello.c")
        samples = []
        for _ in range(self.runs):
            cache = self.fresh("cache-first")
            trees.append(cache)
            elapsed, command = self.kprobe_run_ready(hello, cache, headers=False)
            samples.append(elapsed)
        self.record("c.kprobe-run.btf", samples, command)

        bcc_probe = self.variant("exec_kheaders_bcc.c", "c", ".c")

        def bcc_first_run():
            tree = self.fresh("bcc-tree")
            os.makedirs(tree)
            script = (f"tar -xJf {self.archive} -C {tree} && BCC_KERNEL_SOURCE={tree} "
                      f"exec /usr/bin/python3 {os.path.join(PROBES, 'bcc_run.py')} {bcc_probe}")
            trees.append(tree)
            return start_to_ready(["sh", "-c", script], self.env, r"^attached$"), ["sh", "-c", script]

        samples = []
        for _ in range(self.runs):
            elapsed, command = bcc_first_run()
            samples.append(elapsed)
        self.record("c.bcc.kheaders", samples, command)

        # The same first runs right after the trees above were deleted (~6,400 files each), when
        # ext4's inode allocation is at its slowest: taking turns, kprobe-run first every other run.
        for tree in trees:
            shutil.rmtree(tree)
        trees.clear()
        samples = {"c.kprobe-run.kheaders.deleted": [], "c.bcc.kheaders.deleted": []}
        commands = {}
        for run in range(self.runs):
            for key in (sorted(samples) if run % 2 else sorted(samples, reverse=True)):
                if key.startswith("c.kprobe-run"):
                    cache = self.fresh("cache-first")
                    trees.append(cache)
                    elapsed, commands[key] = self.kprobe_run_ready(probe, cache)
                else:
                    elapsed, commands[key] = bcc_first_run()
                samples[key].append(elapsed)
        for key in samples:
            self.record(key, samples[key], commands[key])
        for tree in trees:
            shutil.rmtree(tree)

    # (d) unpacking alone. Ours and tar take turns, each going first every other run, so drift in
    # the machine's state hits both alike. Every run unpacks into a fresh directory of the same
    # filesystem and no tree is deleted until all runs are done: a deletion right before a run makes
    # the filesystem's inode allocator (ext4's especially) slow and erratic for the next one. One
    # warm-up run of each is not counted.
    def unpack(self):
        print("(d) header unpack", file=sys.stderr)

        # The real first-run path: `headers fetch` into an empty cache (durable entry, MANIFEST).
        def fetch():
            cache = self.fresh("cache-fetch")
            return [self.kprobe_run, "headers", "fetch", "--headers", self.archive], self.kenv(cache), cache

        def ours():
            target = self.fresh("extract")
            return [self.kprobe_run, "headers", "extract", self.archive, "-o", target], self.env, target

        def tar():
            target = self.fresh("tar")
            os.makedirs(target)
            return ["tar", "-xJf", self.archive, "-C", target], self.env, target

        # tar made as durable as the cache entry: one syncfs after it (a reference, not a target).
        def tar_synced():
            target = self.fresh("tar-sync")
            os.makedirs(target)
            return ["sh", "-c", f"tar -xJf {self.archive} -C {target} && sync -f {target}"], self.env, target

        # Earlier sections' dirty data is written back now rather than during these runs.
        os.sync()
        tools = {"d.kprobe-run.fetch": fetch, "d.kprobe-run.extract": ours, "d.tar.extract": tar,
                 "d.tar.synced": tar_synced}
        samples = {key: [] for key in tools}
        commands = {}
        trees = []
        for run in range(self.runs + 1):
            order = list(tools) if run % 2 == 0 else list(reversed(tools))
            for key in order:
                command, env, tree = tools[key]()
                trees.append(tree)
                # The run before left its ~25 MiB tree dirty (tar and headers extract do not flush):
                # written back now, outside the timing, so that a durable unpack's syncfs does not
                # pay for another tool's tree.
                os.sync()
                elapsed = timed(command, env)
                if run > 0:
                    samples[key].append(elapsed)
                    commands[key] = command
        for key in tools:
            self.record(key, samples[key], commands[key])
        # The trees stay until the benchmark ends (cleanup): deleting them now would slow the
        # file creations of (c).

    # (e) peak RSS, one run each, for a short fixed duration.
    def memory(self):
        print("(e) peak RSS", file=sys.stderr)
        # The probe (a) left in the cache: the object's key includes the probe's path.
        probe = self.cached_probe
        rss = {}
        rss["kprobe-run, cached re-run"] = peak_rss_kib(
            [self.kprobe_run, probe, "--headers", self.archive, "-d", "0.2"], self.kenv(self.warm_cache))
        rss["kprobe-run, new probe (compiler worker)"] = peak_rss_kib(
            [self.kprobe_run, self.variant("exec_kheaders.c", "e", ".c"), "--headers", self.archive, "-d", "0.2"],
            self.kenv(self.warm_cache))
        cache = self.fresh("cache-first")
        rss["kprobe-run, first run"] = peak_rss_kib(
            [self.kprobe_run, probe, "--headers", self.archive, "-d", "0.2"], self.kenv(cache))
        shutil.rmtree(cache)
        # BCC's own program text, which kprobe-run takes as it is: the rewrite into libbpf C runs in
        # kprobe-run-bcc (libclang, with the shared LLVM) before the compiler worker.
        rss[BCC_DIALECT] = peak_rss_kib(
            [self.kprobe_run, self.variant("exec_kheaders_bcc.c", "f", ".c"), "--headers", self.archive, "-d", "0.2"],
            self.kenv(self.warm_cache))
        rss["BCC"] = peak_rss_kib(["/usr/bin/python3", os.path.join(PROBES, "bcc_run.py"),
                                   self.variant("exec_kheaders_bcc.c", "a", ".c"), "0.2"],
                                  dict(self.env, BCC_KERNEL_SOURCE=self.tree))
        # timeout(1) exits 124 when it had to stop bpftrace, which is the point here.
        rss["bpftrace"] = peak_rss_kib(["timeout", "-s", "INT", "3", "bpftrace", os.path.join(PROBES, "hello.bt")],
                                       self.env, expected=(0, 124))
        self.rss = rss
        for name, value in rss.items():
            print(f"  {name}: {value / 1024:.1f} MiB", file=sys.stderr)

    def cleanup(self):
        shutil.rmtree(self.work, ignore_errors=True)


def median_ms(samples):
    return statistics.median(samples) * 1000


def first_run_breakdown(samples, transcripts):
    """Medians, in ms, of where a first run's time to attached went, from its -v lines: the
    decompression into memory, the compile, and the rest (process start, reading and hashing the
    archive, checking its members, loading and attaching); None when a run did not say."""
    parts = {"decompress": [], "compile": [], "rest": []}
    for elapsed, text in zip(samples, transcripts):
        unpack = re.search(r"in memory \(decompressed in (\d+) ms\)", text)
        compiled = re.search(r"compiled .* as \S+ C in (\d+) ms", text)
        if not unpack or not compiled:
            return None
        parts["decompress"].append(int(unpack.group(1)))
        parts["compile"].append(int(compiled.group(1)))
        parts["rest"].append(elapsed * 1000 - int(unpack.group(1)) - int(compiled.group(1)))
    return {key: statistics.median(values) for key, values in parts.items()}


def report(bench, output):
    r = bench.results
    m = {key: median_ms(samples) for key, samples in r.items()}

    def row(label, key):
        samples = r[key]
        return (f"| {label} | {m[key]:.0f} | {min(samples) * 1000:.0f}–{max(samples) * 1000:.0f} |")

    def verdict(ours, limit):
        return "met" if ours <= limit else "NOT met"

    bcc_first = m["c.bcc.kheaders"]
    targets = [
        ("(a) cached re-run ≤ 0.05× BCC", m["a.kprobe-run.kheaders"], 0.05 * m["a.bcc.kheaders"],
         f"{m['a.kprobe-run.kheaders']:.0f} ms vs {m['a.bcc.kheaders']:.0f} ms = {m['a.kprobe-run.kheaders'] / m['a.bcc.kheaders']:.3f}×"),
        ("(b) new probe ≤ 0.25× BCC", m["b.kprobe-run.kheaders"], 0.25 * m["a.bcc.kheaders"],
         f"{m['b.kprobe-run.kheaders']:.0f} ms vs {m['a.bcc.kheaders']:.0f} ms = {m['b.kprobe-run.kheaders'] / m['a.bcc.kheaders']:.3f}×"),
        ("(b) new probe in BCC's own dialect ≤ 0.25× BCC", m["b.kprobe-run-bcc-dialect.kheaders"], 0.25 * m["a.bcc.kheaders"],
         f"{m['b.kprobe-run-bcc-dialect.kheaders']:.0f} ms vs {m['a.bcc.kheaders']:.0f} ms = {m['b.kprobe-run-bcc-dialect.kheaders'] / m['a.bcc.kheaders']:.3f}×"),
        ("(c) first run, empty cache (unpack + compile + attach) ≤ 0.5× BCC's first run (tar -xJf + compile)",
         m["c.kprobe-run.kheaders"], 0.5 * bcc_first,
         f"{m['c.kprobe-run.kheaders']:.0f} ms vs {bcc_first:.0f} ms = {m['c.kprobe-run.kheaders'] / bcc_first:.3f}×"),
        ("(d) headers fetch into an empty cache ≤ 1.5× tar -xJf", m["d.kprobe-run.fetch"], 1.5 * m["d.tar.extract"],
         f"{m['d.kprobe-run.fetch']:.0f} ms vs {m['d.tar.extract']:.0f} ms = {m['d.kprobe-run.fetch'] / m['d.tar.extract']:.3f}×"),
        ("(d) headers extract (no cache entry) no slower than tar -xJf", m["d.kprobe-run.extract"], m["d.tar.extract"],
         f"{m['d.kprobe-run.extract']:.0f} ms vs {m['d.tar.extract']:.0f} ms = {m['d.kprobe-run.extract'] / m['d.tar.extract']:.3f}×"),
    ]
    bcc_rss = bench.rss["BCC"]
    ours_rss = max(v for k, v in bench.rss.items() if k.startswith("kprobe-run") and k != BCC_DIALECT)
    targets.append(("(e) peak RSS of any kprobe-run process ≤ 0.5× BCC's", ours_rss, 0.5 * bcc_rss,
                    f"{ours_rss / 1024:.1f} MiB vs {bcc_rss / 1024:.1f} MiB = {ours_rss / bcc_rss:.3f}×"))
    dialect_rss = bench.rss[BCC_DIALECT]
    targets.append(("(e) the same, running BCC's program text itself (--dialect bcc)", dialect_rss, 0.5 * bcc_rss,
                    f"{dialect_rss / 1024:.1f} MiB vs {bcc_rss / 1024:.1f} MiB = {dialect_rss / bcc_rss:.3f}×"))

    lines = [
        "# kprobe-run benchmark",
        "",
        "Regenerated by `make bench` (bench/bench.py); do not edit by hand.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
        f"- kprobe-run: {bench.kprobe_run} (release build); BCC from python3-bpfcc; bpftrace "
        f"{subprocess.run(['bpftrace', '--version'], capture_output=True, text=True).stdout.strip()}; clang-14 CLI",
        f"- kernel headers: {bench.archive} (BCC_KERNEL_SOURCE and the clang-14 CLI use it unpacked)",
        f"- runs per measurement: {bench.runs}; times are medians, in milliseconds",
        "",
        "## Targets",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    for name, ours, limit, detail in targets:
        lines.append(f"| {name} | {verdict(ours, limit)} | {detail} |")
    lines += [
        "",
        "## Times",
        "",
        "Probes: `bench/probes/exec_kheaders.c` (kernel headers: linux/sched.h, linux/fs.h, net/sock.h; "
        "tracepoint sched/sched_process_exec) and its BCC twin `exec_kheaders_bcc.c`; `bpf-examples/hello.c` "
        "(BTF, vmlinux.h) and its bpftrace twin `hello.bt`. A \"new probe\" is the same probe with a new string "
        "in it, so the compile cache misses.",
        "",
        "| measurement | median ms | min–max ms |",
        "|---|---|---|",
        row("(a) kprobe-run, cached re-run, kernel headers, start to attached", "a.kprobe-run.kheaders"),
        row("(a) kprobe-run, cached re-run, BTF (hello.c), start to attached", "a.kprobe-run.btf"),
        row("(a)(b) BCC, same probe, start to attached (BCC compiles every run)", "a.bcc.kheaders"),
        row("(a) bpftrace, hello.bt (BTF), start to first event", "a.bpftrace.btf"),
        row("(b) kprobe-run, new probe, headers cached, start to attached", "b.kprobe-run.kheaders"),
        row("(b) kprobe-run, new probe in BCC's dialect (exec_kheaders_bcc.c), headers cached, start to attached",
            "b.kprobe-run-bcc-dialect.kheaders"),
        row("(b) kprobe-run compile, new probe, headers cached (compile only)", "b.kprobe-run-compile.kheaders"),
        row("(b) clang-14 CLI + llc-14, same flags (compile only)", "b.clang-14.kheaders"),
        row("(b) kprobe-run, new probe, BTF, start to attached", "b.kprobe-run.btf"),
        row("(c) kprobe-run, first run, empty cache: unpack + compile + attach (compiled from the archive in memory "
            "while the cache entry is written; the process waits for the entry before it exits)", "c.kprobe-run.kheaders"),
        row("(c) kprobe-run, first run, empty cache, BTF: vmlinux.h + compile + attach", "c.kprobe-run.btf"),
        row("(c) BCC, first run: tar -xJf + compile + attach", "c.bcc.kheaders"),
        row("(c) kprobe-run, first run right after the trees above were deleted (tens of thousands of files: ext4 then allocates inodes slowly)",
            "c.kprobe-run.kheaders.deleted"),
        row("(c) BCC, first run right after the trees above were deleted", "c.bcc.kheaders.deleted"),
        row("(d) kprobe-run headers fetch, empty cache (the first run's unpack)", "d.kprobe-run.fetch"),
        row("(d) kprobe-run headers extract (plain directory, no cache entry)", "d.kprobe-run.extract"),
        row("(d) tar -xJf", "d.tar.extract"),
        row("(d) tar -xJf, then sync -f (as durable as a cache entry; reference)", "d.tar.synced"),
    ]
    parts = getattr(bench, "first_run_parts", None)
    if parts:
        lines += [
            "",
            f"(c) where kprobe-run's first run goes (medians of its -v lines): {parts['decompress']:.0f} ms decompressing "
            f"the archive into memory, {parts['compile']:.0f} ms compiling (from memory, the worker reading each header "
            f"the probe includes when clang opens it, while the cache entry's ~6,400 files are written and flushed on "
            f"another thread, and the process waits for that thread only when it "
            f"exits), {parts['rest']:.0f} ms the rest (start, reading and hashing the archive, checking its members, "
            "load and attach). Measured on a disk that did not just delete trees (see bench.py, first_run).",
        ]
    lines += [
        "",
        "## Peak RSS",
        "",
        "GNU time's maximum resident set size (the largest of the process and its children, so the "
        "compiler worker counts when it runs).",
        "",
        "| run | MiB |",
        "|---|---|",
    ]
    for name, value in bench.rss.items():
        lines.append(f"| {name} | {value / 1024:.1f} |")
    lines += ["", "## Commands", "", "Paths under the benchmark's scratch directory are shown as they were.", ""]
    for key, command in bench.commands.items():
        lines.append(f"- {key}: `{' '.join(command)}`")
    lines += events.markdown(bench)
    if bench.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in bench.notes]
    with open(output, "w") as out:
        out.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kprobe-run", default=os.path.join(REPO, ".build", "release", "kprobe-run"))
    parser.add_argument("--archive", default=os.path.join(REPO, "..", "shared", "testkernel", "kheaders.tar.xz"))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    parser.add_argument("--work-root", default="/var/tmp")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    parser.add_argument("--only", help="run these sections only (comma-separated method names, e.g. unpack) and "
                                       "write no report: for trying the benchmark itself (events: only the (f) section is rewritten)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py loads BPF programs: run it as root (make bench uses sudo)")
    for tool in [args.kprobe_run, args.archive]:
        if not os.path.exists(tool):
            sys.exit(f"{tool} not found (make bench builds kprobe-run in release first)")
    bench = Bench(args)
    bench.notes += args.note
    try:
        if args.only:
            for section in args.only.split(","):
                if section == "events":
                    # (f) alone rewrites its own section of the report.
                    events.measure(bench)
                    events.replace_section(args.output, events.markdown(bench))
                else:
                    getattr(bench, section)()
            return
        # Unpacking first: the later sections delete trees, which slows the next file creations.
        bench.unpack()
        bench.cached_rerun()
        bench.new_probe()
        bench.first_run()
        bench.memory()
        events.measure(bench)
        report(bench, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    except Failed as failure:
        sys.exit(f"bench: {failure}")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
