# kprobe-run: every target installs the Debian packages it needs first (see README, "Set-up").

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build and run: libbpf, clang/LLVM 14 static archives and headers (the compiler worker links them;
# LLVM's support library needs libtinfo from libncurses-dev), libclang for BCC programs, libarchive
# (xz through liblzma), libelf.
BUILD_PACKAGES := pkg-config libstdc++-12-dev libbpf-dev libelf-dev zlib1g-dev libarchive-dev liblzma-dev \
	llvm-14-dev libclang-14-dev libncurses-dev
# The static device binary also links libarchive's remaining dependencies statically.
STATIC_PACKAGES := $(BUILD_PACKAGES) libacl1-dev libzstd-dev binutils
# Tests also boot the 6.1 test kernel under QEMU (plain, and as a simulated Android device whose
# toolbox is a static busybox), push the static binary to it, drive an interactive bash through
# a pty (script), and build a program with USDT probes (gcc, <sys/sdt.h>). BCC's own tools and
# Python module: the BCC-dialect tests generate their corpus from the tools and compare with BCC on
# it (Tests/bcc-corpus).
TEST_PACKAGES := $(STATIC_PACKAGES) qemu-system-x86 kmod xz-utils bsdutils bash busybox-static gcc systemtap-sdt-dev \
	bpfcc-tools python3-bpfcc
# Benchmark only (never needed to build or test): the tools kprobe-run is measured against.
# clang-14 and llvm-14 give the clang-14/llc-14 CLI for one comparison; kprobe-run itself never runs them.
BENCH_PACKAGES := $(BUILD_PACKAGES) bpfcc-tools python3-bpfcc bpftrace time xz-utils tar clang-14 llvm-14

KPROBE_RUN := .build/debug/kprobe-run

.PHONY: deps build run test static bench clean

deps:
	@./scripts/install-packages $(BUILD_PACKAGES)

build: deps
	$(SWIFT) build

# Runs the hello example for a few seconds while starting programs for it to see, for as long as it
# runs (a first run compiles, and builds a precompiled header, before it attaches).
run: build
	@( while :; do /bin/true; sleep 0.5; done ) & trigger=$$!; \
	$(SUDO) $(KPROBE_RUN) bpf-examples/hello.c --duration 5; status=$$?; \
	kill $$trigger; exit $$status

test:
	@./scripts/install-packages $(TEST_PACKAGES)
	$(SWIFT) build
	$(SUDO) $(SWIFT) test

# A fully static kprobe-run for Android devices of this machine's architecture (runs compiled
# objects and manages headers; no compiler worker): .build/static/kprobe-run-static-$(uname -m).
static:
	@./scripts/install-packages $(STATIC_PACKAGES)
	./scripts/build-static

# Measures kprobe-run against BCC, bpftrace and the clang-14 CLI and rewrites bench/RESULTS.md.
bench:
	@./scripts/install-packages $(BENCH_PACKAGES)
	$(SWIFT) build -c release
	$(SUDO) /usr/bin/python3 bench/bench.py --kprobe-run .build/release/kprobe-run --output bench/RESULTS.md

clean:
	rm -rf .build .build-static
