#ifndef KPROBE_RUN_CLIBBPF_SHIM_H
#define KPROBE_RUN_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/perf_event.h>
#include <linux/bpf.h>

/* ProbeRuntime helpers: things Swift cannot call directly (variadic syscall, va_list reuse). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* Formats a libbpf log message into a malloc'ed string (free() it). A va_list can be consumed
 * once only, so the measuring pass works on a copy. */
static inline char *kprobe_run_vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int length = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (length < 0) return NULL;
    char *text = (char *)malloc((size_t)length + 1);
    if (!text) return NULL;
    vsnprintf(text, (size_t)length + 1, format, args);
    return text;
}

/* glibc has no perf_event_open() wrapper. */
static inline int kprobe_run_perf_event_open(struct perf_event_attr *attr, int pid, int cpu,
                                             int group_fd, unsigned long flags) {
    return (int)syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}
#endif
