#!/usr/bin/python3
"""Measures kprobe-run against BCC 0.26 on a corpus made by generate.py.

For every OUT/TOOL.c (with OUT/TOOL.json):

BCC handles a text when BCC 0.26 itself (python3-bpfcc) compiles it, with the tool's cflags and
BCC_KERNEL_SOURCE = the unpacked test-kernel headers, and the kernel accepts every program the tool
would load, with the program type the tool gives it (load_func's type; KPROBE for kprobes, uprobes
and USDT; TRACEPOINT, RAW_TRACEPOINT, PERF_EVENT for those attach calls and BCC's name convention).
Programs of kinds this machine's kernel cannot load at all (kfunc/LSM: fentry is EPERM here) count
through the compile alone. BCC's verdicts are cached by the text, cflags and headers.

kprobe-run handles a text when `kprobe-run compile --verify --dialect bcc --headers ARCHIVE` (with
the tool's -D cflags) succeeds and the object has, as a program, every function BCC compiled as
one (bpf_function_name of BCC's module: every non-static function).

Writes OUT/report.json and prints a summary and the table of texts BCC handles and kprobe-run not.

Usage: measure.py CORPUS --kprobe-run PATH --headers ARCHIVE [--cache DIR] [--jobs N]
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

PYTHON = "/usr/bin/python3"

# BCC's program types (bcc.BPF.KPROBE and friends, the kernel's enum bpf_prog_type).
SOCKET_FILTER, KPROBE, SCHED_CLS, SCHED_ACT, TRACEPOINT, XDP, PERF_EVENT = 1, 2, 3, 4, 5, 6, 7
RAW_TRACEPOINT, TRACING, LSM = 17, 26, 29
CALL_TYPES = {
    "attach_kprobe": KPROBE, "attach_kretprobe": KPROBE, "attach_uprobe": KPROBE,
    "attach_uretprobe": KPROBE, "usdt": KPROBE, "attach_tracepoint": TRACEPOINT,
    "attach_raw_tracepoint": RAW_TRACEPOINT, "attach_perf_event": PERF_EVENT,
    "attach_kfunc": TRACING, "attach_kretfunc": TRACING, "attach_lsm": LSM,
}
CONVENTION = [("kprobe__", KPROBE), ("kretprobe__", KPROBE), ("tracepoint__", TRACEPOINT),
              ("raw_tracepoint__", RAW_TRACEPOINT), ("kfunc__", TRACING), ("kretfunc__", TRACING),
              ("lsm__", LSM)]


def program_types(description):
    """Function name → the program type the tool loads it with (only the ones it loads)."""
    types = {}
    for entry in description.get("programs", []):
        kind = entry["prog_type"] if entry["call"] == "load_func" else CALL_TYPES.get(entry["call"])
        if kind is not None and entry["function"] != "*":
            types.setdefault(entry["function"], kind)
    return types


def bcc_verdict(text_path, cflags, types):
    """Runs in a child (one BCC module per process): {"compiled", "functions", "failures"}."""
    import ctypes as ct
    from bcc.libbcc import lib
    with open(text_path, "rb") as file:
        text = file.read()
    array = (ct.c_char_p * len(cflags))(*[flag.encode() for flag in cflags])
    module = lib.bpf_module_create_c_from_string(text, 0, array, len(cflags), True, None)
    if not module:
        return {"compiled": False, "functions": [], "failures": {}}
    functions = [lib.bpf_function_name(module, index).decode() for index in range(lib.bpf_num_functions(module))]
    failures = {}
    for name in functions:
        kind = types.get(name)
        if kind is None:
            kind = next((k for prefix, k in CONVENTION if name.startswith(prefix)), None)
        if kind is None or kind in (TRACING, LSM):
            continue
        log = ct.create_string_buffer(65536)
        encoded = name.encode()
        fd = lib.bcc_func_load(module, kind, encoded, lib.bpf_function_start(module, encoded),
                               lib.bpf_function_size(module, encoded), lib.bpf_module_license(module),
                               lib.bpf_module_kern_version(module), 0, log, len(log), None, -1)
        if fd < 0:
            failures[name] = "load failed: %s" % log.value.decode(errors="replace").strip().splitlines()[-1:]
        else:
            os.close(fd)
    return {"compiled": True, "functions": functions, "failures": failures}


def elf_programs(path):
    """Names of the global functions of a BPF object that are in a section of their own (programs)."""
    with open(path, "rb") as file:
        data = file.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + index * shentsize) for index in range(shnum)]

    def name_at(table, offset):
        start = sections[table][4] + offset
        return data[start:data.index(b"\0", start)].decode()
    names = [name_at(shstrndx, section[0]) for section in sections]
    programs = set()
    for section in sections:
        if section[1] != 2:  # SHT_SYMTAB
            continue
        for offset in range(section[4], section[4] + section[5], 24):
            name, info, _, index, _, _ = struct.unpack_from("<IBBHQQ", data, offset)
            if info & 0xF == 2 and info >> 4 == 1 and 0 < index < len(sections) and names[index] != ".text":
                programs.add(name_at(section[6], name))
    return programs


def cached_bcc_verdict(stem, corpus, cache, headers_key, description):
    text_path = os.path.join(corpus, stem + ".c")
    types = program_types(description)
    with open(text_path, "rb") as file:
        key = hashlib.sha256(file.read() + json.dumps([description["cflags"], types, headers_key]).encode()).hexdigest()
    cached = os.path.join(cache, key + ".json")
    if os.path.exists(cached):
        with open(cached) as file:
            return json.load(file)
    result = subprocess.run([PYTHON, os.path.abspath(__file__), "--bcc-verdict", text_path,
                             json.dumps(description["cflags"]), json.dumps(types)],
                            capture_output=True, text=True, timeout=300)
    try:
        verdict = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        verdict = {"compiled": False, "functions": [], "failures": {"*": "BCC crashed: " + result.stderr[-300:]}}
    verdict["diagnostics"] = result.stderr[-2000:]
    with open(cached + ".tmp", "w") as file:
        json.dump(verdict, file)
    os.replace(cached + ".tmp", cached)
    return verdict


def ours(stem, corpus, kprobe_run, headers, functions, description, scratch):
    output = os.path.join(scratch, stem + ".o")
    defines = []
    for flag in description["cflags"]:
        if flag.startswith("-D"):
            defines += ["-D", flag[2:]]
    result = subprocess.run([kprobe_run, "compile", "--verify", "--dialect", "bcc", "--headers", headers]
                            + defines + [os.path.join(corpus, stem + ".c"), "-o", output],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
        return {"ok": False, "status": result.returncode, "reason": (lines[0] if lines else "")[:300]}
    missing = sorted(set(functions) - elf_programs(output))
    if missing:
        return {"ok": False, "status": 0, "reason": "not programs: " + ", ".join(missing)}
    return {"ok": True}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--bcc-verdict":
        print(json.dumps(bcc_verdict(sys.argv[2], json.loads(sys.argv[3]),
                                     {k: v for k, v in json.loads(sys.argv[4]).items()})))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--kprobe-run", required=True)
    parser.add_argument("--headers", required=True)
    parser.add_argument("--cache", help="where BCC's verdicts and the unpacked headers are kept")
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    cache = options.cache or os.path.join(options.corpus, "bcc-cache")
    os.makedirs(cache, exist_ok=True)
    with open(options.headers, "rb") as file:
        headers_key = hashlib.sha256(file.read()).hexdigest()[:16]
    source = os.path.join(cache, "kheaders-" + headers_key)
    if not os.path.isdir(source):
        with tempfile.TemporaryDirectory(dir=cache) as unpacking:
            with tarfile.open(options.headers) as archive:
                archive.extractall(unpacking)
            os.rename(unpacking, source)
            os.makedirs(unpacking)
    os.environ["BCC_KERNEL_SOURCE"] = source
    stems = sorted(name[:-2] for name in os.listdir(options.corpus) if name.endswith(".c"))

    def measure(stem):
        with open(os.path.join(options.corpus, stem + ".json")) as file:
            description = json.load(file)
        verdict = cached_bcc_verdict(stem, options.corpus, cache, headers_key, description)
        bcc_ok = verdict["compiled"] and not verdict["failures"]
        mine = ours(stem, options.corpus, os.path.abspath(options.kprobe_run), os.path.abspath(options.headers),
                    verdict["functions"], description, scratch)
        return stem, {"bcc": bcc_ok, "bcc_compiled": verdict["compiled"], "bcc_failures": verdict["failures"],
                      "functions": verdict["functions"], "ours": mine}

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(options.jobs) as pool:
        results = dict(pool.map(measure, stems))
    elapsed = time.monotonic() - started
    handled_by_bcc = [stem for stem in stems if results[stem]["bcc"]]
    both = [stem for stem in handled_by_bcc if results[stem]["ours"]["ok"]]
    report = {"texts": len(stems), "bcc": len(handled_by_bcc),
              "bcc_compiled": len([s for s in stems if results[s]["bcc_compiled"]]),
              "ours": len([s for s in stems if results[s]["ours"]["ok"]]), "ours_of_bcc": len(both),
              "results": results}
    with open(os.path.join(options.corpus, "report.json"), "w") as file:
        json.dump(report, file, indent=1, sort_keys=True)
    print("%d texts; BCC 0.26 handles %d (compiles %d); kprobe-run handles %d, %d of BCC's (%.1f%%); %.0f s" % (
        len(stems), len(handled_by_bcc), report["bcc_compiled"], report["ours"], len(both),
        100.0 * len(both) / max(1, len(handled_by_bcc)), elapsed))
    print("| text | kprobe-run's failure |\n|---|---|")
    for stem in handled_by_bcc:
        if not results[stem]["ours"]["ok"]:
            print("| %s | %s |" % (stem, results[stem]["ours"]["reason"].replace("|", "\\|")))
    for stem in stems:
        if not results[stem]["bcc"]:
            reason = "does not compile" if not results[stem]["bcc_compiled"] else json.dumps(results[stem]["bcc_failures"])
            print("BCC fails %s: %s" % (stem, reason[:200]), file=sys.stderr)


if __name__ == "__main__":
    main()
