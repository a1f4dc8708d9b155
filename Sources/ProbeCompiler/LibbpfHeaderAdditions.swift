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

    """
}
