"""Runs a BCC probe the way BCC's tools do: compile, load, attach, then wait for SIGTERM (or
for the number of seconds given after the probe file).

Prints "attached" on stderr once BPF() has returned: BCC attaches TRACEPOINT_PROBE programs
while constructing the object."""
import signal
import sys
import time

from bcc import BPF

with open(sys.argv[1]) as source:
    program = BPF(text=source.read())
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("attached", file=sys.stderr, flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
else:
    signal.pause()
