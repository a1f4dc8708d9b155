import KernelHeaders
import KprobeSupport
import Testing
@testable import ProbeRemote

@Suite struct DeviceInfoTests {
    @Test func lineRoundTrips() throws {
        let info = DeviceInfo(version: "0.1.0", release: "6.1.192-kheaders-test", buildID: "0123abcd", machine: "aarch64",
                              android: "14", selinux: "enforcing")
        let parsed = try #require(DeviceInfo(parsing: "noise\n" + info.line + "\r\n"))
        #expect(parsed == info)
        #expect(parsed.arch == .arm64)
    }

    @Test func missingFieldsAreNil() throws {
        let info = DeviceInfo(version: "0.1.0", release: "5.10.0", buildID: nil, machine: "x86_64", android: nil, selinux: "absent")
        let parsed = try #require(DeviceInfo(parsing: info.line))
        #expect(parsed.buildID == nil)
        #expect(parsed.android == nil)
        #expect(DeviceInfo(parsing: "/system/bin/sh: kprobe-run: not found") == nil)
    }

    /// A rebuilt kernel with the same release gets another cache entry; the same kernel the same one.
    @Test func kernelKeyFollowsBuildID() {
        let a = DeviceInfo(version: "0.1.0", release: "6.1.0", buildID: "aa", machine: "x86_64", android: nil, selinux: "absent")
        var b = a
        b.buildID = "bb"
        #expect(a.kernelKey != b.kernelKey)
        #expect(a.kernelKey.hasPrefix("6.1.0-"))
        var c = a
        c.android = "14"
        #expect(a.kernelKey == c.kernelKey)
    }

    /// The device names the cache directory: it cannot point it anywhere else.
    @Test func kernelKeyIsAPlainName() {
        let hostile = DeviceInfo(version: "0.1.0", release: "../../etc", buildID: nil, machine: "x86_64", android: nil, selinux: "absent")
        #expect(!hostile.kernelKey.contains("/"))
        #expect(!hostile.kernelKey.hasPrefix("."))
    }
}

@Suite struct AdbTests {
    @Test func parsesDeviceList() {
        let devices = Adb.parseDevices("* daemon started successfully\nList of devices attached\nemulator-5554\tdevice\nR58M\tunauthorized\n\n")
        #expect(devices.map(\.serial) == ["emulator-5554", "R58M"])
        #expect(devices.map(\.state) == ["device", "unauthorized"])
    }

    @Test func quotesForTheDeviceShell() {
        #expect(quote("/data/local/tmp/kprobe-run/probe.o") == "/data/local/tmp/kprobe-run/probe.o")
        #expect(quote("kprobe:vfs_read=on_read") == "kprobe:vfs_read=on_read")
        #expect(quote("a b") == "'a b'")
        #expect(quote("it's") == "'it'\\''s'")
        #expect(quote("") == "''")
        #expect(quote("$(reboot)") == "'$(reboot)'")
    }

    @Test func noAdbOnPath() {
        #expect(throws: RemoteError.self) { try Adb.locate(environment: ["PATH": "/nonexistent"]) }
    }

    @Test func shellFields() {
        let fields = DeviceTarget.fields("machine=x86_64\nstamp=\nkprobe-run-device version=0.1.0 release=6.1\n")
        #expect(fields["machine"] == "x86_64")
        #expect(fields["stamp"] == "")
        #expect(fields["kprobe-run-device version"] == nil)
    }
}

@Suite struct DeviceBinaryTests {
    @Test func refusesDynamicExecutables() {
        guard case .problem(let why) = DeviceBinary.check("/bin/ls", arch: .x86) else {
            Issue.record("/bin/ls was accepted as a static build")
            return
        }
        #expect(why.contains("dynamically linked"))
    }

    @Test func refusesOtherArchitectures() {
        guard case .problem(let why) = DeviceBinary.check("/bin/ls", arch: .arm64) else {
            Issue.record("an x86-64 binary was accepted for arm64")
            return
        }
        #expect(why.contains("aarch64"))
    }

    /// riscv64: no build of this checkout makes one (the arm64 one is built by the arm64 device test).
    @Test func missingBuildSaysWhatToBuild() {
        do {
            _ = try DeviceBinary.locate(for: .riscv, environment: [:])
            Issue.record("found a riscv64 device binary on an x86-64 machine")
        } catch {
            #expect(error.kind == .usage)
            #expect(error.message.contains("riscv64"))
            #expect(error.message.contains("make static"))
        }
    }

    @Test func names() {
        #expect(DeviceBinary.fileName(for: .arm64) == "kprobe-run-static-aarch64")
        #expect(DeviceBinary.fileName(for: .x86) == "kprobe-run-static-x86_64")
    }
}
