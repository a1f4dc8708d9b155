import CLibBPF
import Glibc
import KprobeSupport

/// Readers for every ring buffer (one libbpf ring_buffer over all of them) and every perf event
/// array (a perf_buffer each, `perfPages` pages per CPU) in the object.
final class EventBuffers {
    private var streams: [EventStream] = []
    private var ringBuffer: OpaquePointer?
    private var perfBuffers: [(buffer: OpaquePointer, stream: EventStream)] = []
    private(set) var pollFDs: [Int32] = []

    /// 256 KiB per CPU: at 8 pages (libbpf's and BCC's usual) a reader that loses the CPU for
    /// 30 ms drops records at 25,000 a second (measured in `make bench` (f)).
    static let perfPages = 64

    /// The kernel wakes a perf buffer's reader once this much has collected on a CPU rather than
    /// at every sample (libbpf's perf_buffer__new): a wake-up is an irq_work interrupt raised by
    /// the traced task, which cost it about 12 µs per record on this machine's virtual CPUs (a
    /// quarter of the buffer leaves three quarters for the reader to be late by).
    static let perfWakeupBytes = perfPages * Int(sysconf(Int32(_SC_PAGESIZE))) / 4
    /// The longest a perf buffer record waits to be read when fewer than `perfWakeupBytes` come.
    static let perfLatency: Int32 = 100

    /// libbpf's attributes for a BPF output perf event, with the watermark above.
    private static var perfAttributes: perf_event_attr {
        var attributes = perf_event_attr()
        attributes.size = UInt32(MemoryLayout<perf_event_attr>.size)
        attributes.type = PERF_TYPE_SOFTWARE.rawValue
        attributes.config = UInt64(PERF_COUNT_SW_BPF_OUTPUT.rawValue)
        attributes.sample_type = UInt64(PERF_SAMPLE_RAW.rawValue)
        attributes.sample_period = 1
        attributes.watermark = 1
        attributes.wakeup_watermark = UInt32(perfWakeupBytes)
        return attributes
    }

    var hasPerfBuffers: Bool { !perfBuffers.isEmpty }

    /// The BTF types records are decoded as.
    var recordTypes: Set<UInt32> { Set(streams.compactMap(\.typeID)) }

    init(maps allMaps: [BPFMap], formatter: BTFFormatter, metadata: ObjectMetadata, reporter: Reporter, log: (String) -> Void) throws(RuntimeError) {
        let maps = allMaps.filter { $0.type == BPF_MAP_TYPE_RINGBUF || $0.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY }
        for map in maps {
            let name = map.name
            let stream = EventStream(map: name, recordType: metadata.events[name], formatter: formatter, reporter: reporter,
                                     labelled: maps.count > 1)
            streams.append(stream)
            let fd = map.fd
            let described = stream.typeID == nil
                ? "hex records (no \(metadata.events[name] ?? "struct \(name)_event or event") in BTF)" : "records typed by BTF"
            if map.type == BPF_MAP_TYPE_RINGBUF {
                if let ringBuffer {
                    guard ring_buffer__add(ringBuffer, fd, ringBufferSample, stream.context) == 0 else {
                        throw RuntimeError(.internal, "cannot read ring buffer '\(name)': \(Errno.current)")
                    }
                } else {
                    guard let created = ring_buffer__new(fd, ringBufferSample, stream.context, nil) else {
                        throw RuntimeError(.internal, "cannot read ring buffer '\(name)': \(Errno.current)")
                    }
                    ringBuffer = created
                    pollFDs.append(ring_buffer__epoll_fd(created))
                }
                log("reading ring buffer '\(name)': \(described)")
            } else {
                var attributes = EventBuffers.perfAttributes
                guard let buffer = perf_buffer__new_raw(fd, EventBuffers.perfPages, &attributes, perfBufferEvent, stream.context, nil) else {
                    let err = Errno.current
                    throw RuntimeError(err.isPermission ? .notPermitted : .internal, "cannot read perf buffer '\(name)': \(err)")
                }
                perfBuffers.append((buffer, stream))
                pollFDs.append(perf_buffer__epoll_fd(buffer))
                log("reading perf buffer '\(name)' (\(EventBuffers.perfPages) pages per CPU, woken per \(EventBuffers.perfWakeupBytes / 1024) KiB or every \(EventBuffers.perfLatency) ms): \(described)")
            }
        }
    }

    deinit {
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        for entry in perfBuffers { perf_buffer__free(entry.buffer) }
    }

    /// Reads every record queued in every buffer; true when there were any.
    @discardableResult
    func consume() -> Bool {
        let before = received
        if let ringBuffer { _ = ring_buffer__consume(ringBuffer) }
        for entry in perfBuffers { _ = perf_buffer__consume(entry.buffer) }
        return received != before
    }

    private var received: UInt64 { streams.reduce(0) { $0 &+ $1.received } }

    /// Records read from each map (for -v).
    var receivedPerMap: [(map: String, count: UInt64)] { streams.map { ($0.map, $0.received) } }

    /// Perf-buffer samples the kernel dropped because the reader fell behind, per map. Ring
    /// buffers cannot report drops to the reader: there bpf_ringbuf_reserve/output fails in the
    /// program, which can count the failures in a global (printed at exit).
    var lost: [(map: String, count: UInt64)] {
        streams.filter { $0.lost > 0 }.map { ($0.map, $0.lost) }
    }
}
