#!/bin/sh
# Runs inside the arm64 test VM (Tests/IntegrationTests/Arm64Tests.swift) under busybox sh: a fresh
# boot of the arm64 6.1 test kernel (kheaders a module in /lib/modules, kprobes, no BTF, no glibc).
# The static arm64 kprobe-run fetches the kernel's headers, then runs objects compiled on the
# x86-64 host for arm64, and leaves nothing behind.
#   device.sh KPROBE_RUN OBJECTS   (OBJECTS holds vfsopen.o and openat-bcc.o)
set -u
kprobe_run=$1 objects=$2
fail() { echo "FAIL: $*"; exit 1; }
module_loaded() { grep -q '^kheaders ' /proc/modules; }

module_loaded && fail "kheaders is loaded at boot; the test needs it absent"
[ -e /sys/kernel/btf/vmlinux ] && fail "the test kernel unexpectedly has BTF"
# debugfs lists every registered kprobe, also those libbpf makes through perf_event_open.
mount -t debugfs debugfs /sys/kernel/debug || fail "cannot mount debugfs"
kprobes=/sys/kernel/debug/kprobes/list
"$kprobe_run" --version || fail "the static arm64 binary does not start"

echo "== headers fetch (loads kheaders from /lib/modules, unpacks, unloads)"
"$kprobe_run" headers fetch -v > /tmp/fetch.out 2>&1
status=$?
cat /tmp/fetch.out
[ $status -eq 0 ] || fail "headers fetch exited $status"
grep -q 'unloaded the kheaders module again' /tmp/fetch.out || fail "headers fetch did not say it unloaded kheaders"
module_loaded && fail "kheaders still loaded after headers fetch"
ls /var/cache/kprobe-run/headers/*/MANIFEST > /dev/null 2>&1 || fail "no cache entry after headers fetch"
ls -d /var/cache/kprobe-run/headers/*/arch/arm64/include > /dev/null 2>&1 || fail "the cache entry has no arm64 headers"

# Something for the probes to see: opens of /proc/version while they run.
( while :; do cat /proc/version > /dev/null; sleep 0.3; done ) &
opener=$!
trap 'kill $opener 2>/dev/null' EXIT

echo "== libbpf dialect: BPF_KPROBE(vfs_open) reads its path argument"
"$kprobe_run" "$objects/vfsopen.o" -d 5 -v > /tmp/vfsopen.out 2> /tmp/vfsopen.err
status=$?
cat /tmp/vfsopen.err
grep -m 3 'vfs_open version' /tmp/vfsopen.out
[ $status -eq 0 ] || fail "vfsopen.o exited $status"
grep -q 'vfs_open version pid' /tmp/vfsopen.out || fail "no vfs_open event for cat /proc/version"

echo "== BCC dialect: kprobe__sys_openat reads dfd and filename through the syscall wrapper"
"$kprobe_run" "$objects/openat-bcc.o" -d 6 -v > /tmp/openat.out 2> /tmp/openat.err &
run=$!
attached=1
while kill -0 $run 2>/dev/null; do
    if grep -q '__arm64_sys_openat' $kprobes; then
        echo "kprobe registered on __arm64_sys_openat while it runs"
        attached=0
        break
    fi
    sleep 0.5
done
wait $run
status=$?
cat /tmp/openat.err
grep -m 3 'filename=/proc/version' /tmp/openat.out
[ $status -eq 0 ] || fail "openat-bcc.o exited $status"
[ $attached -eq 0 ] || fail "no kprobe on __arm64_sys_openat in $kprobes during the run"
grep 'filename=/proc/version' /tmp/openat.out | grep -q 'dfd=-100' \
    || fail "no openat event with dfd=-100 (AT_FDCWD) and filename=/proc/version"

echo "== nothing left behind"
kill $opener 2>/dev/null
sleep 1
[ -s $kprobes ] && { cat $kprobes; fail "kprobes still registered after the runs"; }
pidof kprobe-run-static-aarch64 kprobe-run && fail "a kprobe-run process is left"
module_loaded && fail "kheaders loaded at the end"
echo "PASS"
