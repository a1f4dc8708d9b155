import Testing
@testable import ProbeRuntime

@Suite struct ListingTests {
    @Test func patternsNameKindsAndNames() throws {
        let tracepoints = try AttachPointListing.parse("tracepoint:sched:*")
        #expect(tracepoints.kinds == [.tracepoint] && tracepoints.name == "sched:*" && tracepoints.explicit)
        // bpftrace's short forms, and an empty name meaning every one.
        #expect(try AttachPointListing.parse("t:syscalls:sys_enter_open*").kinds == [.tracepoint])
        #expect(try AttachPointListing.parse("rawtracepoint:").kinds == [.rawTracepoint])
        #expect(try AttachPointListing.parse("rawtracepoint:").name == "*")
        #expect(try AttachPointListing.parse("U:/bin/app:*").kinds == [.usdt])
        // Without a kind, or with a wildcard one, the kernel's kinds are searched (no binaries).
        let bare = try AttachPointListing.parse("vfs_read")
        #expect(bare.kinds == AttachPointListing.Kind.kernel && bare.name == "vfs_read" && !bare.explicit)
        #expect(try AttachPointListing.parse(nil).name == "*")
        #expect(try AttachPointListing.parse("*probe:vfs_*").kinds == [.kprobe])
        do {
            _ = try AttachPointListing.parse("bogus:x")
            Issue.record("accepted an unknown kind")
        } catch {
            #expect(error.kind == .usage)
            #expect(error.message.contains("unknown kind 'bogus'"), "\(error.message)")
        }
    }

    /// A `.note.stapsdt` descriptor: probe address, base, semaphore, then three strings.
    @Test func usdtNoteDescriptors() {
        func descriptor(semaphore: UInt64, strings: [String], addressSize: Int = 8) -> [UInt8] {
            var bytes: [UInt8] = []
            for value in [UInt64(0x11ba), 0x2039, semaphore] {
                bytes += withUnsafeBytes(of: value.littleEndian) { Array($0.prefix(addressSize)) }
            }
            for string in strings { bytes += Array(string.utf8) + [0] }
            return bytes
        }
        #expect(USDTProbe(descriptor: descriptor(semaphore: 0, strings: ["app", "tick", "-8@%rbx 8@%r15"]), addressSize: 8)
                == USDTProbe(provider: "app", name: "tick", arguments: "-8@%rbx 8@%r15", hasSemaphore: false))
        #expect(USDTProbe(descriptor: descriptor(semaphore: 0x4030, strings: ["app", "guarded", ""]), addressSize: 8)
                == USDTProbe(provider: "app", name: "guarded", arguments: "", hasSemaphore: true))
        #expect(USDTProbe(descriptor: descriptor(semaphore: 0x4030, strings: ["lib", "start", "4@%eax"], addressSize: 4), addressSize: 4)?.name == "start")
        #expect(USDTProbe(descriptor: descriptor(semaphore: 0, strings: ["", "tick", ""]), addressSize: 8) == nil)
        #expect(USDTProbe(descriptor: [UInt8](repeating: 0, count: 20), addressSize: 8) == nil)
    }
}
