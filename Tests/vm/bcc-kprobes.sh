#!/bin/bash
# Runs inside the test VM (Tests/IntegrationTests/VMTests.swift): BCC tools' programs, compiled
# unchanged on the host, attached with --attach where the tools' Python code attaches them.
set -u
kprobe_run=$1 objects=$2
fail() { echo "FAIL: $*"; exit 1; }

( while :; do /bin/true; kill -0 $$; sleep 0.3; done ) &
trigger=$!
trap 'kill $trigger 2>/dev/null' EXIT

echo "== execsnoop"
"$kprobe_run" "$objects/execsnoop.o" -d 4 -v \
    -a kprobe:__x64_sys_execve=syscall__execve -a kretprobe:__x64_sys_execve=do_ret_sys_execve > /tmp/exec.out
status=$?
head -5 /tmp/exec.out
[ $status -eq 0 ] || fail "execsnoop exited $status"
grep -q 'comm=true' /tmp/exec.out || fail "execsnoop printed no decoded event for /bin/true"

echo "== killsnoop"
"$kprobe_run" "$objects/killsnoop.o" -d 4 -v \
    -a kprobe:__x64_sys_kill=syscall__kill -a kretprobe:__x64_sys_kill=do_ret_sys_kill > /tmp/kill.out
status=$?
head -5 /tmp/kill.out
[ $status -eq 0 ] || fail "killsnoop exited $status"
grep -q "tpid=$$" /tmp/kill.out || fail "killsnoop printed no decoded event for kill -0 $$"
# Texts of the installed bpfcc-tools (generated corpus), with the -a arguments their Python gave:
# each must run and print what it saw (opensnoop: the files /bin/true opens; vfsstat: its counts).
for object in "$objects"/corpus-*.o; do
    [ -e "$object" ] || continue
    tool=$(basename "$object" .o)
    echo "== $tool"
    mapfile -t attach < "${object%.o}.args"
    "$kprobe_run" "$object" -d 4 "${attach[@]}" > "/tmp/$tool.out"
    status=$?
    head -5 "/tmp/$tool.out"
    [ $status -eq 0 ] || fail "$tool exited $status"
    [ -s "/tmp/$tool.out" ] || fail "$tool printed nothing"
done
if [ -e "$objects/corpus-opensnoop.o" ]; then
    grep -q 'comm=true' /tmp/corpus-opensnoop.out || fail "opensnoop printed no decoded open by /bin/true"
fi
echo "PASS"
