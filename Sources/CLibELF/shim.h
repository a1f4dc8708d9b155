#ifndef KPROBE_RUN_CLIBELF_SHIM_H
#define KPROBE_RUN_CLIBELF_SHIM_H
#include <libelf.h>
#include <gelf.h>
#endif
