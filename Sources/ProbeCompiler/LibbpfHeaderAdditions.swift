/// Definitions that libbpf's BPF-side headers gained after the libbpf the machine has (Debian 12
/// ships 1.1), appended to the installed headers so that probes written against a current libbpf
/// (libbpf-tools, the kernel's selftests) compile unchanged. Each is guarded, so a newer installed
/// libbpf keeps its own; the names and meanings are libbpf's, the text is ours.
enum LibbpfHeaderAdditions {
    /// Installed header name → text appended to it.
    static let byHeader: [String: String] = [
        "bpf_helpers.h": helpers,
        "bpf_tracing.h": tracing,
        "bpf_core_read.h": coreRead,
    ]

    static let helpers = """

    /* kprobe-run: declarations of libbpf releases after the installed one. */
    #ifndef __kptr_untrusted
    #define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
    #endif
    #ifndef __percpu_kptr
    #define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
    #endif
    #ifndef __arg_ctx
    #define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
    #define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
    #define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
    #define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
    #define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
    #endif
    #ifndef __bpf_fastcall
    #define __bpf_fastcall
    #endif
    #ifndef __bpf_unreachable
    #define __bpf_unreachable() __builtin_trap()
    #endif
    #ifndef bpf_for_each
    /* Open-coded iterators (Linux 6.4): `bpf_for_each(TYPE, cur, args...)` walks the kernel's
       bpf_iter_TYPE with its _new/_next/_destroy kfuncs (declared in vmlinux.h); `bpf_for(i, a, b)`
       counts i from a up to b, and `bpf_repeat(n)` runs the body n times, both with bpf_iter_num.
       The iterator is destroyed when the loop's scope ends (cleanup attribute); the cast to void
       of the destroy kfunc makes clang emit its BTF, which it does not for a cleanup function. */
    #define bpf_for_each(type, cur, args...) for ( \
        struct bpf_iter_##type ___it __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
            *___p __attribute__((unused)) = (bpf_iter_##type##_new(&___it, ##args), \
                                             (void)bpf_iter_##type##_destroy, (void *)0); \
        (((cur) = bpf_iter_##type##_next(&___it))); \
    )
    #define bpf_for(i, start, end) for ( \
        struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
            *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), \
                                             (void)bpf_iter_num_destroy, (void *)0); \
        ({ \
            int *___t = bpf_iter_num_next(&___it); \
            /* the bounds check tells the verifier the range of i */ \
            (___t && ((i) = *___t, (i) >= (start) && (i) < (end))); \
        }); \
    )
    #define bpf_repeat(n) for ( \
        struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
            *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (n)), \
                                             (void)bpf_iter_num_destroy, (void *)0); \
        bpf_iter_num_next(&___it); \
    )
    #endif
    #ifndef bpf_ksym_exists
    /* True when the kernel has the __weak __ksym `sym`: libbpf resolves a missing weak ksym to 0
       and the verifier drops the branch that uses it. A strong extern is always there. */
    #define bpf_ksym_exists(sym) ({ \\
        _Static_assert(!__builtin_constant_p(!!sym), #sym " should be declared __weak"); \\
        !!sym; \\
    })
    #endif

    """

    static let tracing = """

    /* kprobe-run: declarations of libbpf releases after the installed one. */
    #ifndef BPF_UPROBE
    /* A uprobe's arguments arrive in pt_regs as a kprobe's do. */
    #define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
    #endif
    #ifndef BPF_URETPROBE
    #define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
    #endif
    #ifndef BPF_KPROBE_SYSCALL
    #define BPF_KPROBE_SYSCALL BPF_KSYSCALL
    #endif

    """

    static let coreRead = """

    /* kprobe-run: declarations of libbpf releases after the installed one. */
    #ifndef bpf_core_cast
    /* `ptr` as a read-only pointer to the kernel's `type` (the bpf_rdonly_cast kfunc, declared in
       vmlinux.h with the kernel's other kfuncs). */
    #define bpf_core_cast(ptr, type) \\
        ((typeof(type) *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))
    #endif
    #if defined(bpf_core_type_matches) && __clang_major__ < 15
    /* A "type matches" relocation is LLVM 15's; kprobe-run's clang 14 aborts on it, so a probe that
       asks for one gets this error instead (bpf_core_type_exists and bpf_core_field_exists work). */
    #undef bpf_core_type_matches
    #define bpf_core_type_matches(type) \
        bpf_core_type_matches_needs_clang_15__use_bpf_core_type_exists_or_bpf_core_field_exists
    #endif

    """
}
