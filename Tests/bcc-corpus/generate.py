#!/usr/bin/python3
"""Generates a corpus of BCC programs from the installed bpfcc-tools (Debian's BCC 0.26 tools).

Each tool runs with stub/bcc first on PYTHONPATH (see stub/bcc/__init__.py): its BPF() records the
C text as BCC would compile it, the cflags, the USDT contexts and every program the tool loads or
attaches, then the tool stops where it would start to wait for events. For each text this writes

    OUT/TOOL.c      the text (TOOL-2.c, … when a tool makes more than one BPF object)
    OUT/TOOL.json   {"tool", "arguments", "cflags", "usdt_contexts", "programs": [{call, function, …}]}

Nothing of BCC's is kept in the project: the corpus is made at test time from the installed
package. Tools that need an argument get a plausible one (ARGUMENTS); tools whose run stops
before they make a BPF object (a runtime the machine lacks, a tracefs path the kernel lacks) are
listed in OUT/skipped.json with the reason.

Usage: generate.py OUT [--tools DIR] [--jobs N]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"

# Arguments for tools that need some (or whose interesting text needs some). PID stands for a
# process the generator starts (a python3 with USDT probes, sleeping).
ARGUMENTS = {
    "argdist": ["-H", "p::vfs_read(struct file *file, char *buf, size_t count):size_t:count"],
    "funccount": ["vfs_read"],
    "funcinterval": ["vfs_read"],
    "funclatency": ["vfs_read"],
    "funcslower": ["vfs_read"],
    "stackcount": ["vfs_read"],
    "trace": ["do_sys_open \"%s\", arg2"],
    "inject": ["kmalloc", "-v", "should_failslab()"],
    "netqtop": ["-n", "lo"],
    "biolatpcts": ["vda"],
    "dirtop": ["-d", "/tmp"],
    "ttysnoop": ["/dev/null"],
    "deadlock": ["PID", "--binary", "/lib/x86_64-linux-gnu/libc.so.6"],
    "ucalls": ["-l", "python", "PID"],
    "uflow": ["-l", "python", "PID"],
    "ugc": ["-l", "python", "PID"],
    "uobjnew": ["-l", "python", "PID"],
    "ustat": ["-l", "python"],
    "uthreads": ["-l", "python", "PID"],
    "mysqld_qslower": ["PID"],
}

# Tools that cannot make their program here, and why (skipped.json says so).
SKIP = {
    "reset-trace": "a shell script, not a BCC tool",
    "cachetop": "a curses interface that needs a terminal",
    "dbslower": "needs a running MySQL or PostgreSQL with USDT probes",
    "dbstat": "needs a running MySQL or PostgreSQL with USDT probes",
    "mysqld_qslower": "needs a running MySQL with USDT probes",
}

# Data symbols of the 6.1 test kernel (CONFIG_KALLSYMS_ALL=y) that tools look up in /proc/kallsyms.
KALLSYMS_DATA = b"".join(b"ffffffff82%06x d %s\n" % (index, name) for index, name in enumerate(
    [b"ext4_file_operations", b"vm_stat", b"vm_zone_stat", b"nfs_file_operations", b"nfs4_file_operations"]))

# The language tools are bash wrappers: `$lib/ucalls -l python "$@"`.
WRAPPER = re.compile(r'^\$lib/(\w+)\s+(.*?)\s*"\$@"', re.M)


def runner(tool, arguments):
    """Runs inside the child: the tool as __main__, with waits that end the run."""
    import builtins
    import io
    import runpy
    import signal
    import time
    import bcc  # the stand-in (PYTHONPATH)

    real_open = builtins.open

    def open_kallsyms(file, mode="r", *args, **kwargs):
        # The test kernel has CONFIG_KALLSYMS_ALL (data symbols), this machine's kernel may not.
        if file in ("/proc/kallsyms", b"/proc/kallsyms"):
            with real_open("/proc/kallsyms", "rb") as real:
                data = real.read() + KALLSYMS_DATA
            return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())
        return real_open(file, mode, *args, **kwargs)
    builtins.open = open_kallsyms

    def sleep(_seconds):
        if bcc._state["texts"]:
            bcc.finish()
    time.sleep = sleep
    signal.pause = bcc.finish
    sys.argv = [tool] + arguments
    runpy.run_path(tool, run_name="__main__")
    bcc.finish()


def command_for(path):
    """The (script, arguments) a tool runs, following a bash wrapper to the script it runs."""
    name = os.path.basename(path)[:-len("-bpfcc")]
    with open(path, errors="replace") as file:
        text = file.read()
    if name in SKIP:
        return None
    if text.startswith("#!/bin/bash"):
        wrapped = WRAPPER.search(text)
        if not wrapped:
            return None
        script = os.path.join(os.path.dirname(path), wrapped.group(1))
        return script, wrapped.group(2).split() + ["PID"]
    return path, ARGUMENTS.get(name, [])


def generate_one(path, out, pid, scratch):
    name = os.path.basename(path)[:-len("-bpfcc")]
    command = command_for(path)
    if command is None:
        return name, SKIP.get(name, "a shell script that runs no BCC tool")
    script, arguments = command
    arguments = [str(pid) if argument == "PID" else argument for argument in arguments]
    record = os.path.join(scratch, name + ".json")
    environment = dict(os.environ, PYTHONPATH=os.path.join(HERE, "stub"), BCC_CORPUS_RECORD=record,
                       TERM="dumb", PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    try:
        result = subprocess.run([PYTHON, os.path.abspath(__file__), "--run-tool", script] + arguments,
                                env=environment, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        output = (result.stderr or result.stdout).strip().splitlines()
    except subprocess.TimeoutExpired:
        output = ["timed out"]
    print("%-16s %5.1fs" % (name, time.monotonic() - started), file=sys.stderr)
    if not os.path.exists(record):
        return name, "made no BPF object: " + (output[-1] if output else "no output")
    with open(record) as file:
        state = json.load(file)
    texts = [entry for entry in state["texts"] if entry["text"].strip()]
    if not texts:
        return name, "made no BPF object with text"
    for index, entry in enumerate(texts):
        stem = name if index == 0 else "%s-%d" % (name, index + 1)
        with open(os.path.join(out, stem + ".c"), "w") as file:
            file.write(entry["text"])
        description = {"tool": name, "arguments": arguments, "cflags": entry["cflags"],
                       "usdt_contexts": entry["usdt_contexts"],
                       "programs": state["programs"] if index == len(texts) - 1 else []}
        with open(os.path.join(out, stem + ".json"), "w") as file:
            json.dump(description, file, indent=1, sort_keys=True)
    return name, None


def fingerprint(tools):
    digest = hashlib.sha256()
    for path in tools + [os.path.abspath(__file__), os.path.join(HERE, "stub", "bcc", "__init__.py")]:
        with open(path, "rb") as file:
            digest.update(path.encode() + b"\0" + file.read())
    return digest.hexdigest()


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--run-tool":
        runner(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--tools", default="/usr/sbin")
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    tools = sorted(os.path.join(options.tools, name) for name in os.listdir(options.tools) if name.endswith("-bpfcc"))
    # The corpus depends on the tools and on this generator only: made once per version of both.
    stamp = os.path.join(options.out, "generated-from")
    key = fingerprint(tools)
    if os.path.exists(stamp) and open(stamp).read() == key:
        return
    if os.path.isdir(options.out):
        shutil.rmtree(options.out)
    os.makedirs(options.out)
    # A process with USDT probes for the tools that want a pid: python3 is built with them.
    target = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(600)"])
    skipped = {}
    try:
        with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(options.jobs) as pool:
            for name, reason in pool.map(lambda path: generate_one(path, options.out, target.pid, scratch), tools):
                if reason:
                    skipped[name] = reason
    finally:
        target.kill()
        target.wait()
    with open(os.path.join(options.out, "skipped.json"), "w") as file:
        json.dump(skipped, file, indent=1, sort_keys=True)
    with open(stamp, "w") as file:
        file.write(key)
    made = len([name for name in os.listdir(options.out) if name.endswith(".c")])
    print("%d texts from %d tools; %d tools skipped" % (made, len(tools), len(skipped)))


if __name__ == "__main__":
    main()
