import CLibBPF
import Glibc

/// Records from one BPF_MAP_TYPE_RINGBUF or BPF_MAP_TYPE_PERF_EVENT_ARRAY map.
///
/// Record type: the C type the BCC front end recorded for the map (`.kprobe_run.meta`, e.g.
/// "struct data_t"); otherwise, by convention, the BTF struct named `M_event` for map `M`, or
/// failing that `event` (typedefs to a struct count too). clang emits BTF only for types that
/// something in the object's BTF refers to, and a struct used only through a local pointer or
/// variable (e.g. the result of bpf_ringbuf_reserve) is NOT emitted; so a probe declares one
/// global that mentions the type (the BCC front end emits such an anchor itself):
///
///     struct event { u32 pid; char comm[16]; };
///     const struct event *unused_event __attribute__((unused));
///
/// (it lands in .bss as a NULL pointer and costs 8 bytes). A record at least as large as the
/// type (perf buffers pad records to 8 bytes) is decoded, as is a shorter one whose type ends in
/// a char array (see `BTFFormatter.decodeRecord`); anything else is printed as hex.
final class EventStream {
    let map: String
    let typeID: UInt32?
    let typeSize: Int
    let formatter: BTFFormatter
    let reporter: Reporter
    /// Prefix text lines with the map name when several maps produce records.
    let labelled: Bool
    private(set) var lost: UInt64 = 0
    /// Records read so far (printed or not).
    private(set) var received: UInt64 = 0
    /// Full-size records of a flat type print through this, without decoding (none when the
    /// format prints no events).
    let plan: RecordPlan?

    init(map: String, recordType: String?, formatter: BTFFormatter, reporter: Reporter, labelled: Bool) {
        self.map = map
        self.formatter = formatter
        self.reporter = reporter
        self.labelled = labelled
        let id = recordType.flatMap { formatter.typeID(spelling: $0) }
            ?? formatter.structID(named: map + "_event") ?? formatter.structID(named: "event")
        typeID = id
        typeSize = id.flatMap { formatter.size(of: $0) } ?? 0
        plan = id.flatMap { id in
            reporter.writer.eventLayout(map: map, labelled: labelled).flatMap {
                RecordPlan(formatter: formatter, typeID: id, layout: $0, timestamps: reporter.timestamps)
            }
        }
    }

    func record(_ bytes: UnsafeRawBufferPointer) {
        received &+= 1
        if let plan, bytes.count >= plan.size {
            reporter.event(map: map, label: labelled, plan: plan, record: bytes) { decode(bytes) }
        } else {
            reporter.event(map: map, label: labelled, value: decode(bytes))
        }
    }

    private func decode(_ bytes: UnsafeRawBufferPointer) -> Value {
        let value: Value
        if let typeID, typeSize > 0 {
            value = formatter.decodeRecord(typeID: typeID, size: typeSize, bytes: bytes)
        } else {
            value = .bytes(Array(bytes))
        }
        return value
    }

    func lose(_ count: UInt64) { lost &+= count }

    var context: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    static func from(_ context: UnsafeMutableRawPointer?) -> EventStream? {
        context.map { Unmanaged<EventStream>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// libbpf ring buffer callback; a negative return stops consuming once stdout has closed.
let ringBufferSample: ring_buffer_sample_fn = { context, data, size in
    guard let stream = EventStream.from(context) else { return 0 }
    guard !stream.reporter.sink.closed else { return -EPIPE }
    // Stops this consume call; the session ends at the next loop turn.
    guard !stream.reporter.limitReached else { return -ECANCELED }
    stream.record(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// libbpf raw perf buffer callback (see `EventBuffers.perfAttributes`): samples as libbpf's own
/// perf_buffer__new reads them, `{ header; u32 size; data[size] }`, and lost-sample records
/// `{ header; u64 id; u64 lost }`; it stops consuming once stdout has closed or --max-events is
/// reached.
let perfBufferEvent: perf_buffer_event_fn = { context, _, header in
    guard let stream = EventStream.from(context), let header else { return LIBBPF_PERF_EVENT_CONT }
    let body = UnsafeRawPointer(header) + MemoryLayout<perf_event_header>.size
    switch header.pointee.type {
    case PERF_RECORD_SAMPLE.rawValue:
        guard !stream.reporter.sink.closed, !stream.reporter.limitReached else { return LIBBPF_PERF_EVENT_DONE }
        let size = body.loadUnaligned(as: UInt32.self)
        stream.record(UnsafeRawBufferPointer(start: body + 4, count: Int(size)))
    case PERF_RECORD_LOST.rawValue:
        stream.lose(body.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    default:
        break
    }
    return LIBBPF_PERF_EVENT_CONT
}
