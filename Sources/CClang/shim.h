#ifndef KPROBE_RUN_CCLANG_SHIM_H
#define KPROBE_RUN_CCLANG_SHIM_H
#include <clang-c/Index.h>
#endif
