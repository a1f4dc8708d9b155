#ifndef KPROBE_RUN_CLIBELF_SHIM_H
#define KPROBE_RUN_CLIBELF_SHIM_H
#include <libelf.h>
#include <gelf.h>
#include <unistd.h>
#include <sys/syscall.h>

/* Module loading has no glibc wrappers and syscall(2) is variadic, which Swift cannot call;
   these give KernelHeaders typed entry points for loading the kheaders module. */
static inline int kprobe_run_finit_module(int fd, const char *params, int flags) {
    return (int)syscall(SYS_finit_module, fd, params, flags);
}

static inline int kprobe_run_init_module(const void *image, unsigned long size, const char *params) {
    return (int)syscall(SYS_init_module, image, size, params);
}

static inline int kprobe_run_delete_module(const char *name, int flags) {
    return (int)syscall(SYS_delete_module, name, flags);
}

/* A file in memory: the decompressed kheaders archive, which the compiler worker maps too. */
static inline int kprobe_run_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */);
}

/* The calling thread's id, for setpriority on one thread (the header cache's writer). */
static inline int kprobe_run_gettid(void) {
    return (int)syscall(SYS_gettid);
}

/* One flush for a whole freshly unpacked tree instead of an fsync per file. */
static inline int kprobe_run_syncfs(int fd) {
    return (int)syscall(SYS_syncfs, fd);
}
#endif
