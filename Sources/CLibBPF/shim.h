#ifndef KPROBE_RUN_CLIBBPF_SHIM_H
#define KPROBE_RUN_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/perf_event.h>
#include <linux/bpf.h>

/* ProbeRuntime helpers: things Swift cannot call directly (variadic syscall, va_list). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* libbpf and btf_dump call back with a va_list. Swift never sees one: swiftc 6.3.1 crashes
 * (getClangFunctionType) compiling for aarch64 any Swift code that converts a function to, or uses
 * a value of, a C function-pointer type with a va_list parameter (va_list is a struct there).
 * So the callbacks live here, format in C, and hand Swift finished text. */

/* Receives each libbpf warning or info message, formatted (debug chatter is dropped). */
typedef void (*kprobe_run_libbpf_sink)(const char *message);

/* Function-local: a static global defined in a shim header is not emitted by Swift's importer.
 * Every static inline function has a copy per object file that uses it, so only one Swift file
 * (LibbpfLog.swift) calls these. */
static inline kprobe_run_libbpf_sink *kprobe_run_libbpf_sink_slot(void) {
    static kprobe_run_libbpf_sink sink;
    return &sink;
}

static inline int kprobe_run_libbpf_print(enum libbpf_print_level level, const char *format, va_list args) {
    kprobe_run_libbpf_sink sink = *kprobe_run_libbpf_sink_slot();
    if (level == LIBBPF_DEBUG || !sink) return 0;
    /* A va_list can be consumed once only, so the measuring pass works on a copy. */
    va_list copy;
    va_copy(copy, args);
    int length = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (length < 0) return 0;
    char *text = (char *)malloc((size_t)length + 1);
    if (!text) return 0;
    vsnprintf(text, (size_t)length + 1, format, args);
    sink(text);
    free(text);
    return 0;
}

/* Routes libbpf's process-wide output to `sink`. */
static inline void kprobe_run_libbpf_set_sink(kprobe_run_libbpf_sink sink) {
    *kprobe_run_libbpf_sink_slot() = sink;
    libbpf_set_print(kprobe_run_libbpf_print);
}

static inline void kprobe_run_btf_dump_vfprintf(void *file, const char *format, va_list args) {
    vfprintf((FILE *)file, format, args);
}

/* A btf_dump that writes C straight into `file` (default options). */
static inline struct btf_dump *kprobe_run_btf_dump_to_file(const struct btf *btf, FILE *file) {
    return btf_dump__new(btf, kprobe_run_btf_dump_vfprintf, file, NULL);
}

/* glibc has no perf_event_open() wrapper. */
static inline int kprobe_run_perf_event_open(struct perf_event_attr *attr, int pid, int cpu,
                                             int group_fd, unsigned long flags) {
    return (int)syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* write(2) that never waits for room: pwritev2(RWF_NOWAIT) at the file position (offset -1),
 * which fails with EAGAIN where a plain write would block and with EOPNOTSUPP where the file
 * does not support it (ttys; pipes on older kernels). Through syscall(): the glibc wrapper is
 * declared only under _GNU_SOURCE. */
static inline long kprobe_run_write_nowait(int fd, const void *bytes, size_t count) {
    struct { void *base; size_t length; } vector = { (void *)bytes, count }; /* struct iovec */
    return syscall(SYS_pwritev2, fd, &vector, 1, -1L, -1L, RWF_NOWAIT);
}
#endif
