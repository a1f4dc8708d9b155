#!/bin/bash
# Runs inside the test VM (Tests/IntegrationTests/VMTests.swift): a fresh boot of the 6.1 test kernel,
# kheaders not loaded, no BTF, kprobes on. Checks the kheaders issue's must-show end to end.
set -u
kprobe_run=$1
fail() { echo "FAIL: $*"; exit 1; }
module_loaded() { grep -q '^kheaders ' /proc/modules; }

module_loaded && fail "kheaders is loaded at boot; the test needs it absent"
[ -e /sys/kernel/btf/vmlinux ] && fail "the test kernel unexpectedly has BTF"

echo "== doctor"
"$kprobe_run" doctor > /tmp/doctor.out 2>&1 || fail "doctor exited $?"
cat /tmp/doctor.out
grep -q '^ok  *kheaders  *module, not loaded' /tmp/doctor.out || fail "doctor did not say kheaders is a module that is not loaded"
grep -q '^ok  *kprobes ' /tmp/doctor.out || fail "doctor did not find the test kernel's kprobes"
grep -q '^missing  *btf ' /tmp/doctor.out || fail "doctor did not say the test kernel has no BTF"
module_loaded && fail "doctor loaded kheaders"

# Something for the probe to see: opens (vfs_open) while it runs.
( while :; do cat /etc/hostname > /dev/null; sleep 0.5; done ) &
opener=$!
trap 'kill $opener 2>/dev/null' EXIT

echo "== first run"
"$kprobe_run" bpf-examples/vfsopen.c -d 6 -v > /tmp/first.out 2> /tmp/first.err
status=$?
cat /tmp/first.err
grep -m 3 vfs_open /tmp/first.out
[ $status -eq 0 ] || fail "first run exited $status"
grep -q 'vfs_open hostname' /tmp/first.out || fail "first run printed no vfs_open event for cat /etc/hostname"
module_loaded && fail "kheaders still loaded after the first run"
grep -qi 'load' /tmp/first.err || fail "first run did not say it loaded kheaders"
ls /var/cache/kprobe-run/headers/*/MANIFEST > /dev/null 2>&1 || fail "no cache entry after the first run"

echo "== second run"
"$kprobe_run" bpf-examples/vfsopen.c -d 4 -v > /tmp/second.out 2> /tmp/second.err
status=$?
cat /tmp/second.err
[ $status -eq 0 ] || fail "second run exited $status"
grep -q 'vfs_open' /tmp/second.out || fail "second run printed no events"
grep -qi 'loaded kheaders\|loading kheaders\|modprobe\|finit_module' /tmp/second.err && fail "second run loaded the module again"
module_loaded && fail "kheaders loaded after the second run"
echo "PASS"
