import CLibBPF
import Testing
@testable import ProbeRuntime

/// Builds BTF in memory the way clang would describe
///
///     enum state { IDLE = 0, BUSY = 2 };
///     struct inner { short a; unsigned char b[3]; };
///     struct event {
///         int pid; char comm[16]; unsigned long long ts; struct inner inner; void *ptr;
///         __u32 counts[3]; enum state state; unsigned int flag : 1, level : 3; _Bool ok;
///     };
final class SampleBTF {
    let btf: OpaquePointer
    var ids: [String: UInt32] = [:]

    init() {
        btf = btf__new_empty()
        let int = btf__add_int(btf, "int", 4, Int32(BTF_INT_SIGNED))
        let char = btf__add_int(btf, "char", 1, Int32(BTF_INT_SIGNED))
        let ulonglong = btf__add_int(btf, "unsigned long long", 8, 0)
        let short = btf__add_int(btf, "short", 2, Int32(BTF_INT_SIGNED))
        let uchar = btf__add_int(btf, "unsigned char", 1, 0)
        let uint = btf__add_int(btf, "unsigned int", 4, 0)
        let bool = btf__add_int(btf, "_Bool", 1, Int32(BTF_INT_BOOL))
        let u32 = btf__add_typedef(btf, "__u32", uint)
        let u8 = btf__add_typedef(btf, "__u8", uchar)
        let void = btf__add_ptr(btf, 0)
        let state = btf__add_enum(btf, "state", 4)
        btf__add_enum_value(btf, "IDLE", 0)
        btf__add_enum_value(btf, "BUSY", 2)
        let comm = btf__add_array(btf, int, char, 16)
        let bytes3 = btf__add_array(btf, int, uchar, 3)
        let counts = btf__add_array(btf, int, u32, 3)
        let raw = btf__add_array(btf, int, u8, 4)
        let inner = btf__add_struct(btf, "inner", 6)
        btf__add_field(btf, "a", short, 0, 0)
        btf__add_field(btf, "b", bytes3, 16, 0)
        let event = btf__add_struct(btf, "event", 72)
        btf__add_field(btf, "pid", int, 0, 0)
        btf__add_field(btf, "comm", comm, 32, 0)
        btf__add_field(btf, "ts", ulonglong, 160, 0)
        btf__add_field(btf, "inner", inner, 224, 0)
        btf__add_field(btf, "ptr", void, 320, 0)
        btf__add_field(btf, "counts", counts, 384, 0)
        btf__add_field(btf, "state", state, 480, 0)
        btf__add_field(btf, "flag", uint, 512, 1)
        btf__add_field(btf, "level", uint, 513, 3)
        btf__add_field(btf, "ok", bool, 544, 0)
        let key = btf__add_array(btf, int, char, 16)
        for (name, id) in [("int", int), ("event", event), ("comm", key), ("raw", raw), ("u64", ulonglong), ("state", state)] {
            ids[name] = UInt32(id)
        }
    }

    deinit { btf__free(btf) }

    static func eventBytes() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 72)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        put(Int32(-5), at: 0)
        for (i, c) in "bash".utf8.enumerated() { bytes[4 + i] = c }
        bytes[12] = 0x7a  // after the NUL: must not show
        put(UInt64(1_000_000_000_000), at: 20)
        put(Int16(-3), at: 28)
        bytes[30] = 1; bytes[31] = 2; bytes[32] = 3
        put(UInt64(0xffff_8880_dead_beef), at: 40)
        put(UInt32(7), at: 48); put(UInt32(8), at: 52); put(UInt32(9), at: 56)
        put(UInt32(2), at: 60)
        bytes[64] = 0b1011  // flag (bit 512) = 1, level (bits 513-515) = 5
        bytes[68] = 1
        return bytes
    }
}

@Suite struct BTFFormatterTests {
    @Test func decodesAStructForText() {
        let sample = SampleBTF()
        let formatter = BTFFormatter(btf: BTFHandle(pointer: sample.btf))
        let value = formatter.decode(typeID: sample.ids["event"]!, bytes: SampleBTF.eventBytes())
        #expect(value.line == "pid=-5 comm=bash ts=1000000000000 inner={a=-3 b=[1,2,3]} ptr=0xffff8880deadbeef counts=[7,8,9] state=BUSY flag=1 level=5 ok=true")
        #expect(formatter.structID(named: "event") == sample.ids["event"])
        #expect(formatter.structID(named: "missing") == nil)
        // A short record decodes the members it covers.
        #expect(formatter.decode(typeID: sample.ids["event"]!, bytes: Array(SampleBTF.eventBytes().prefix(20))).line == "pid=-5 comm=bash")
    }

    @Test func decodesAStructForJSON() {
        let sample = SampleBTF()
        let value = BTFFormatter(btf: BTFHandle(pointer: sample.btf)).decode(typeID: sample.ids["event"]!, bytes: SampleBTF.eventBytes())
        #expect(value.json == #"{"pid":-5,"comm":"bash","ts":1000000000000,"inner":{"a":-3,"b":[1,2,3]},"ptr":"0xffff8880deadbeef","counts":[7,8,9],"state":"BUSY","flag":1,"level":5,"ok":true}"#)
    }

    @Test func scalarsStringsAndUntypedBytes() {
        let sample = SampleBTF()
        let formatter = BTFFormatter(btf: BTFHandle(pointer: sample.btf))
        var key = [UInt8](repeating: 0, count: 16)
        for (i, c) in "systemd".utf8.enumerated() { key[i] = c }
        #expect(formatter.decode(typeID: sample.ids["comm"]!, bytes: key) == .string("systemd"))
        #expect(formatter.decode(typeID: sample.ids["int"]!, bytes: [0xff, 0xff, 0xff, 0xff]) == .signed(-1))
        #expect(formatter.decode(typeID: sample.ids["u64"]!, bytes: [1, 1, 0, 0, 0, 0, 0, 0]) == .unsigned(257))
        #expect(formatter.decode(typeID: sample.ids["state"]!, bytes: [5, 0, 0, 0]) == .unsigned(5))
        // __u8[4] is data, not text.
        #expect(formatter.decode(typeID: sample.ids["raw"]!, bytes: [65, 66, 0, 1]).text == "[65,66,0,1]")
        #expect(formatter.isInteger(sample.ids["u64"]!))
        #expect(!formatter.isInteger(sample.ids["event"]!))
        #expect(formatter.size(of: sample.ids["event"]!) == 72)
        // No type information: integers by size, hex otherwise.
        #expect(formatter.decode(typeID: 0, bytes: [2, 0, 0, 0]) == .unsigned(2))
        #expect(formatter.decode(typeID: 0, bytes: [1, 2, 3]).text == "0x010203")
        #expect(BTFFormatter(btf: nil).decode(typeID: 5, bytes: [9, 0]) == .unsigned(9))
    }
}
