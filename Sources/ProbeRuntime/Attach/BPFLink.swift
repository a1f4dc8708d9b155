import CLibBPF

/// One attachment (`struct bpf_link *`), owned by the `Attacher` until `destroy`, which detaches
/// the program and closes what libbpf opened for it (perf event, uprobe or kprobe event).
struct BPFLink {
    let pointer: OpaquePointer

    func destroy() {
        bpf_link__destroy(pointer)
    }
}
