# kprobe-run: every target installs the Debian packages it needs first (see README, "Set-up").

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build and run: libbpf, clang/LLVM 14 static archives and headers (the compiler worker links them;
# LLVM's support library needs libtinfo from libncurses-dev), libclang for BCC programs, libarchive
# (xz through liblzma), libelf.
BUILD_PACKAGES := pkg-config libstdc++-12-dev libbpf-dev libelf-dev zlib1g-dev libarchive-dev liblzma-dev \
	llvm-14-dev libclang-14-dev libncurses-dev
# The static device binary also links libarchive's remaining dependencies statically. A cross build
# (ARCH=aarch64) fetches the target's libraries with a private apt (scripts/debian-sysroot: apt,
# dpkg-deb, Debian's archive keyring) and unpacks the Swift SDK (xz-utils).
STATIC_PACKAGES := $(BUILD_PACKAGES) libacl1-dev libzstd-dev binutils apt dpkg debian-archive-keyring xz-utils
# Tests also boot the 6.1 test kernel under QEMU (plain, and as a simulated Android device whose
# toolbox is a static busybox), push the static binary to it, drive an interactive bash through
# a pty (script), build a program with USDT probes (gcc, <sys/sdt.h>) and trace Python's own
# (python3); the arm64 test kernel boots under qemu-system-aarch64 from an initramfs (cpio) and runs
# the cross-built static arm64 binary, which the test builds. BCC's own tools and Python module: the
# BCC-dialect tests generate their corpus from the tools and compare with BCC on it (Tests/bcc-corpus).
# libbpf-tools: its binaries embed Debian-built BPF objects, which the tests take out and verify.
TEST_PACKAGES := $(STATIC_PACKAGES) qemu-system-x86 qemu-system-arm cpio kmod xz-utils bsdutils bash busybox-static \
	gcc systemtap-sdt-dev python3 bpfcc-tools python3-bpfcc libbpf-tools
# Packaging: dpkg-shlibdeps for the .deb's Depends, man-db to read the manual page.
PACKAGE_PACKAGES := $(BUILD_PACKAGES) dpkg-dev man-db
# Benchmark only (never needed to build or test): the tools kprobe-run is measured against.
# clang-14 and llvm-14 give the clang-14/llc-14 CLI for one comparison; kprobe-run itself never runs them.
BENCH_PACKAGES := $(BUILD_PACKAGES) bpfcc-tools python3-bpfcc bpftrace time xz-utils tar clang-14 llvm-14

KPROBE_RUN := .build/debug/kprobe-run
PREFIX ?= /usr/local
DESTDIR ?=
# The manual page, rendered by swift-argument-parser's generate-manual plugin from the debug build.
MANUAL := .build/plugins/GenerateManual/outputs/kprobe-run/kprobe-run.1

.PHONY: deps build run test test-package static static-aarch64 bench clean release manual install uninstall deb

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

# A fully static kprobe-run for Android devices (runs compiled objects and manages headers; no
# compiler worker): .build/static/kprobe-run-static-$(uname -m), or with ARCH=aarch64 (or arm64)
# cross-built for arm64 with a Swift SDK ($$SWIFT_SDK, else ../shared/swift-sdk-aarch64):
# .build/static/kprobe-run-static-aarch64.
ARCH ?=
static:
	@./scripts/install-packages $(STATIC_PACKAGES)
	./scripts/build-static $(ARCH)

static-aarch64:
	@$(MAKE) static ARCH=aarch64

# Measures kprobe-run against BCC, bpftrace and the clang-14 CLI and rewrites bench/RESULTS.md.
bench:
	@./scripts/install-packages $(BENCH_PACKAGES)
	$(SWIFT) build -c release
	$(SUDO) /usr/bin/python3 bench/bench.py --kprobe-run .build/release/kprobe-run --output bench/RESULTS.md

# What is installed and packaged: the Swift runtime linked in, so only Debian's libraries are needed.
release:
	@./scripts/install-packages $(PACKAGE_PACKAGES)
	$(SWIFT) build -c release --static-swift-stdlib

manual:
	@./scripts/install-packages $(PACKAGE_PACKAGES)
	$(SWIFT) package plugin generate-manual --configuration debug

# kprobe-run in PREFIX/bin, its compiler workers in PREFIX/libexec/kprobe-run, the manual page,
# bash/zsh/fish completions and the examples (see scripts/install-files).
install: release manual
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) MANUAL=$(MANUAL) ./scripts/install-files

uninstall:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) ./scripts/install-files --uninstall

# .build/deb/kprobe-run_VERSION_ARCH.deb, for `apt install ./kprobe-run_*.deb`.
deb: release manual
	MANUAL=$(MANUAL) ./scripts/make-deb

# The package installed into a fresh root with dpkg: --version, a probe, man, completions.
test-package: deb
	$(SWIFT) build --build-tests
	$(SUDO) $(SWIFT) test --skip-build --filter PackageTests

clean:
	rm -rf .build .build-static .build-static-*
