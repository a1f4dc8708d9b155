import CLibBPF

/// One attachment (`struct bpf_link *`), owned by the `Attacher` until `destroy`, which detaches
/// the program and closes what libbpf opened for it (perf event, uprobe or kprobe event).
struct BPFLink {
    let pointer: OpaquePointer

    func destroy() {
        bpf_link__destroy(pointer)
    }
}

/// libbpf's `*_opts` structs: libbpf refuses options whose bytes after the last field it knows
/// are not zero ("non-zero extra bytes"), and Swift's initializer leaves tail padding undefined,
/// so the storage is zeroed in place (a copy would not keep the padding) before `sz` is set.
enum LibbpfOptions {
    static func prepare<Options>(_ options: inout Options, size: WritableKeyPath<Options, Int>) {
        withUnsafeMutableBytes(of: &options) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        options[keyPath: size] = MemoryLayout<Options>.size
    }
}
