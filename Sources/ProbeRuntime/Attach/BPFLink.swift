import CLibBPF
import Glibc
import KprobeSupport

/// One attachment (`struct bpf_link *`), owned by the `Attacher` until `destroy`, which detaches
/// the program and closes what libbpf opened for it (perf event, uprobe or kprobe event).
struct BPFLink {
    let pointer: OpaquePointer

    func destroy() {
        bpf_link__destroy(pointer)
    }

    /// Destroys `links` from several threads at once. Closing a tracepoint's perf event waits for
    /// RCU grace periods, partly under a kernel-wide mutex (perf_trace_destroy's event_mutex):
    /// the 360 links of `tracepoint:syscalls:sys_enter_*` took 27 s to destroy one after another
    /// here and 15 s from 32 threads, whose waits outside the mutex overlap. Returns when every
    /// link is destroyed.
    static func destroy(_ links: [BPFLink], threads: Int = 32) {
        let groups = min(threads, links.count / 8)
        guard groups > 1 else {
            for link in links { link.destroy() }
            return
        }
        var started: [NativeThread] = []
        for group in 0..<groups {
            let batch = Batch(stride(from: group, to: links.count, by: groups).map { links[$0] })
            if let thread = try? NativeThread.start({ batch.destroyAll() }) {
                started.append(thread)
            } else {
                batch.destroyAll()
            }
        }
        for thread in started { thread.join() }
    }

    /// The links one thread destroys; handed to that thread alone.
    private final class Batch: @unchecked Sendable {
        let links: [BPFLink]
        init(_ links: [BPFLink]) { self.links = links }
        func destroyAll() { for link in links { link.destroy() } }
    }
}
