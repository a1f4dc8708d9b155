#!/bin/bash
# Runs inside the test VM (Tests/IntegrationTests/VMAttachTests.swift), whose kernel has kprobes:
# -l lists kernel functions from available_filter_functions, and -a 'kprobe:vfs_*=FUNC' attaches
# one program at every match and counts their calls.
set -u
kprobe_run=$1 object=$2
fail() { echo "FAIL: $*"; exit 1; }

( while :; do cat /etc/hostname > /dev/null; sleep 0.3; done ) &
reader=$!
trap 'kill $reader 2>/dev/null' EXIT

echo "== list"
"$kprobe_run" -l 'kprobe:vfs_*' > /tmp/list.out || fail "-l exited $?"
listed=$(wc -l < /tmp/list.out)
echo "$listed kprobe:vfs_* functions listed"
grep -qx 'kprobe:vfs_read' /tmp/list.out || fail "-l 'kprobe:vfs_*' does not list kprobe:vfs_read"

echo "== attach"
"$kprobe_run" "$object" -d 3 -v -a 'kprobe:vfs_*=count_calls' > /tmp/attach.out 2> /tmp/attach.err
status=$?
grep 'match(es)' /tmp/attach.err
cat /tmp/attach.out
[ $status -eq 0 ] || { cat /tmp/attach.err; fail "the wildcard run exited $status"; }
attached=$(sed -n 's/.* at \([0-9]*\) of \([0-9]*\) match(es).*/\1/p' /tmp/attach.err)
[ "${attached:-0}" -gt 1 ] || fail "the wildcard attached at ${attached:-no} functions"
grep -Eq '[1-9][0-9]*$' /tmp/attach.out || fail "no vfs_* call was counted"

echo "== no match"
"$kprobe_run" "$object" -d 1 -a 'kprobe:no_such_function_*=count_calls' 2> /tmp/none.err
status=$?
cat /tmp/none.err
[ $status -eq 6 ] || fail "a pattern matching nothing exited $status, not 6"
echo "PASS"
