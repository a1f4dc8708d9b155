#ifndef KPROBE_RUN_CLANG_BPF_H
#define KPROBE_RUN_CLANG_BPF_H

/*
 * Compiles one C probe to a BPF ELF object with clang/LLVM 14's libraries.
 * Plain C outside, C++ inside; nothing here throws.
 */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A file the compiler sees at an absolute path, over the real filesystem. */
typedef struct clang_bpf_file {
    const char *path;
    const char *contents;
    size_t length;
} clang_bpf_file;

/* A file of a header tree: its path below the tree's root and where its bytes are. */
typedef struct clang_bpf_tree_file {
    const char *path;
    unsigned long long offset;
    size_t length;
} clang_bpf_tree_file;

typedef struct clang_bpf_input {
    /* The probe text and the name diagnostics give it (as the user wrote it). */
    const char *source;
    size_t source_length;
    const char *source_name;
    /* "bpf": compile for bpfel directly (CO-RE, vmlinux.h). Anything else, such as
       "x86_64-linux-gnu": parse for that triple, then generate code for BPF. */
    const char *triple;
    /* Driver-style flags (-I, -isystem, -include, -D, -U, -W..., -nostdinc, -std=...). */
    const char *const *arguments;
    size_t argument_count;
    const clang_bpf_file *files;
    size_t file_count;
    /* A precompiled header to load before the source (as -include-pch), or NULL. It must have
       been built by clang_bpf_build_pch from the same arguments and triple. */
    const char *pch_path;
    /* The BPF instruction set to generate ("v1", "v2", "v3"), or NULL for LLVM's default (v1). */
    const char *cpu;
    /* Called once when the compiler found facts about the probe's maps: entry i says that in
       the metadata table tables[i] ("events": a perf or ring buffer map carries records of a
       struct type; "slots", "syscallKeys", "syscallKeyConditions": see ProbeMetadata) keys[i]
       maps to values[i]. Returns the JSON for the `.kprobe_run.meta` section as a malloc'd
       string (the compiler frees it), or NULL for none. NULL: no metadata is added. */
    char *(*write_metadata)(const char *const *tables, const char *const *keys, const char *const *values, size_t count);
    /* A header tree served from a file (the decompressed archive's memfd) below tree_root (no
       slash at its end), in front of the real filesystem and behind `files`: each file's path is
       relative to tree_root and its bytes lie at offset in tree_fd. A file is read when the
       compile opens it, so only the headers it includes take memory. tree_root NULL: none. */
    const char *tree_root;
    int tree_fd;
    const clang_bpf_tree_file *tree_files;
    size_t tree_file_count;
} clang_bpf_input;

/* Buffers are malloc'd; release them with clang_bpf_result_dispose. */
typedef struct clang_bpf_result {
    unsigned char *object;
    size_t object_size;
    /* Diagnostics text: warnings on success, errors (and warnings) on failure. NUL-terminated. */
    char *diagnostics;
    size_t diagnostics_size;
    /* Every file the compile read (headers, forced includes, a precompiled header's inputs),
       each followed by a NUL, as clang named them; the precompiled header itself is not listed. */
    char *dependencies;
    size_t dependencies_size;
} clang_bpf_result;

enum {
    CLANG_BPF_OK = 0,
    /* The probe did not compile; the diagnostics say why. */
    CLANG_BPF_COMPILE_ERROR = 1,
    /* The flags were rejected (unknown option, extra inputs); the diagnostics say which. */
    CLANG_BPF_BAD_ARGUMENTS = 2,
    /* clang's builtin headers (libclang-common-14-dev) are missing. */
    CLANG_BPF_NO_RESOURCE_DIR = 3,
    /* LLVM could not set up the BPF back end. */
    CLANG_BPF_BACKEND_UNAVAILABLE = 4,
};

/* Registers the BPF target and a fatal error handler that prints LLVM's message to stderr
   and exits with status 70. Call once, before clang_bpf_compile. */
void clang_bpf_initialize(void);

/* Returns one of the CLANG_BPF_* codes. result is always filled (object empty on failure). */
int clang_bpf_compile(const clang_bpf_input *input, clang_bpf_result *result);

/* Parses input->source as a header with input's arguments and writes a precompiled header to
   output_path (input->pch_path is ignored). Returns a CLANG_BPF_* code; on success result
   holds no object, only diagnostics and dependencies. */
int clang_bpf_build_pch(const clang_bpf_input *input, const char *output_path, clang_bpf_result *result);

/* clang's full version text: a precompiled header is only readable by the same version. */
const char *clang_bpf_version(void);

void clang_bpf_result_dispose(clang_bpf_result *result);

#ifdef __cplusplus
}
#endif

#endif
