#ifndef KPROBE_RUN_CLIBARCHIVE_SHIM_H
#define KPROBE_RUN_CLIBARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
