#ifndef KPROBE_RUN_CLIBBPF_SHIM_H
#define KPROBE_RUN_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/perf_event.h>
#include <linux/bpf.h>
#endif
