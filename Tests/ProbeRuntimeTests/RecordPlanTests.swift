import CLibBPF
import Testing
@testable import ProbeRuntime

/// The fast event path prints exactly what the `Value` path prints.
struct RecordPlanTests {
    @Test func planLinesMatchDecodedValues() throws {
        let btf = try #require(btf__new_empty())
        defer { btf__free(btf) }
        let int = btf__add_int(btf, "int", 4, Int32(BTF_INT_SIGNED))
        let char = btf__add_int(btf, "char", 1, Int32(BTF_INT_SIGNED))
        let u64 = btf__add_int(btf, "unsigned long long", 8, 0)
        let short = btf__add_int(btf, "short", 2, Int32(BTF_INT_SIGNED))
        let bool = btf__add_int(btf, "_Bool", 1, Int32(BTF_INT_BOOL))
        let pointer = btf__add_ptr(btf, 0)
        let comm = btf__add_array(btf, int, char, 16)
        let flat = btf__add_struct(btf, "flat", 48)
        btf__add_field(btf, "pid", int, 0, 0)
        btf__add_field(btf, "comm", comm, 32, 0)
        btf__add_field(btf, "ts", u64, 192, 0)
        btf__add_field(btf, "ptr", pointer, 256, 0)
        btf__add_field(btf, "ok", bool, 320, 0)
        btf__add_field(btf, "delta", short, 336, 0)
        let formatter = BTFFormatter(btf: BTFHandle(pointer: btf))
        let writers: [any OutputWriter] = [TextOutput(), JSONOutput()]

        /// The plan's line for `bytes`, nil when it leaves the record to the Value path.
        func line(_ plan: RecordPlan, _ bytes: [UInt8], time: Double) -> String? {
            var out = [UInt8](repeating: 0, count: plan.maxLength)
            return bytes.withUnsafeBytes { raw in
                out.withUnsafeMutableBufferPointer { buffer in
                    plan.write(raw, time: time, to: buffer.baseAddress!).map { String(decoding: buffer[..<($0 - buffer.baseAddress!)], as: UTF8.self) }
                }
            }
        }

        func record(pid: Int32, comm: [UInt8], ts: UInt64, ptr: UInt64, ok: UInt8, delta: Int16) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 48)
            withUnsafeBytes(of: pid) { bytes.replaceSubrange(0..<4, with: $0) }
            bytes.replaceSubrange(4..<(4 + comm.count), with: comm)
            withUnsafeBytes(of: ts) { bytes.replaceSubrange(24..<32, with: $0) }
            withUnsafeBytes(of: ptr) { bytes.replaceSubrange(32..<40, with: $0) }
            bytes[40] = ok
            withUnsafeBytes(of: delta) { bytes.replaceSubrange(42..<44, with: $0) }
            return bytes
        }
        let records = [
            record(pid: 42, comm: Array("bash".utf8), ts: 1_000_000_000_123, ptr: 0xffff_8880_dead_beef, ok: 1, delta: -3),
            record(pid: -2147483648, comm: Array("a\"b\\c\td\u{01}\u{7f}\u{1f}".utf8), ts: .max, ptr: 0, ok: 0, delta: .min),
            record(pid: 0, comm: [UInt8](repeating: UInt8(ascii: "x"), count: 16), ts: 0, ptr: 1, ok: 2, delta: 0),
        ]
        for writer in writers {
            for labelled in [false, true] {
                for time in [nil, 0, 1.5, 12345.0000005] as [Double?] {
                    let layout = try #require(writer.eventLayout(map: "events", labelled: labelled))
                    let plan = try #require(RecordPlan(formatter: formatter, typeID: UInt32(flat), layout: layout, timestamps: time != nil))
                    for bytes in records {
                        let value = formatter.decode(typeID: UInt32(flat), bytes: bytes)
                        let expected = try #require(writer.event(map: "events", labelled: labelled, value: value, time: time))
                        #expect(line(plan, bytes, time: time ?? 0) == expected)
                        #expect(expected.utf8.count <= plan.maxLength)
                    }
                    // Text the plan would not write alike goes the Value way.
                    #expect(line(plan, record(pid: 1, comm: Array("é".utf8), ts: 0, ptr: 0, ok: 0, delta: 0), time: 0) == nil)
                }
            }
        }
        #expect(FoldedOutput().eventLayout(map: "events", labelled: false) == nil)
        // Nested structs, enums and other arrays have no plan.
        let nested = btf__add_struct(btf, "nested", 48)
        btf__add_field(btf, "inner", flat, 0, 0)
        #expect(RecordPlan(formatter: formatter, typeID: UInt32(nested), layout: EventLayout(style: .json), timestamps: false) == nil)
    }
}
