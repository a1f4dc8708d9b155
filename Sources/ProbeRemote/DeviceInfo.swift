import KernelHeaders
import KprobeSupport

/// What the device side reports about itself (`kprobe-run device info`), as one line of
/// `key=value` fields, so that the host learns everything in one adb round trip.
public struct DeviceInfo: Sendable, Equatable {
    static let tag = "kprobe-run-device"

    /// The device side's kprobe-run version.
    public var version: String
    /// `uname -r` and the kernel's GNU build id: together they name the device's header cache entry.
    public var release: String
    public var buildID: String?
    /// `uname -m`.
    public var machine: String
    /// ro.build.version.release, when the device is Android.
    public var android: String?
    /// "enforcing", "permissive" or "absent".
    public var selinux: String

    public init(version: String, release: String, buildID: String?, machine: String, android: String?, selinux: String) {
        self.version = version
        self.release = release
        self.buildID = buildID
        self.machine = machine
        self.android = android
        self.selinux = selinux
    }

    /// This system, as the device side sees it.
    public static func current() -> DeviceInfo {
        let selinux: String = switch AndroidSystem.selinuxEnforcing {
        case true?: "enforcing"
        case false?: "permissive"
        case nil: "absent"
        }
        return DeviceInfo(version: KprobeRunVersion.string, release: RunningKernel.release, buildID: RunningKernel.buildID,
                          machine: RunningKernel.machine,
                          android: AndroidSystem.isAndroid ? AndroidSystem.property("ro.build.version.release") : nil,
                          selinux: selinux)
    }

    /// Values never hold spaces: "-" stands for none.
    public var line: String {
        func field(_ value: String?) -> String {
            guard let value, !value.isEmpty else { return "-" }
            return String(value.map { $0.isWhitespace ? "_" : $0 })
        }
        return "\(Self.tag) version=\(field(version)) release=\(field(release)) build-id=\(field(buildID)) machine=\(field(machine)) android=\(field(android)) selinux=\(field(selinux))"
    }

    /// The info line among whatever else the device printed; nil when there is none.
    public init?(parsing text: String) {
        guard let line = text.split(whereSeparator: \.isNewline).last(where: { $0.hasPrefix(Self.tag + " ") }) else {
            return nil
        }
        var fields: [String: String] = [:]
        for token in line.split(separator: " ").dropFirst() {
            guard let eq = token.firstIndex(of: "=") else { continue }
            let value = String(token[token.index(after: eq)...])
            fields[String(token[..<eq])] = value == "-" ? nil : value
        }
        guard let version = fields["version"], let release = fields["release"], let machine = fields["machine"] else { return nil }
        self.init(version: version, release: release, buildID: fields["build-id"], machine: machine,
                  android: fields["android"], selinux: fields["selinux"] ?? "absent")
    }

    public var arch: KernelArch? { KernelArch(machine: machine) }

    /// The host-side cache entry for this kernel's headers: `<release>-<sha256(build id or release)[:12]>`,
    /// named like the running kernel's own entries.
    /// The release comes from the device, so anything but a plain name is replaced before it
    /// becomes a directory name.
    public var kernelKey: String {
        let name = String(release.prefix(100).map { $0.isLetter || $0.isNumber || "._+-".contains($0) ? $0 : "_" })
        return "\(name.hasPrefix(".") ? "_" + name.dropFirst() : name)-\(String(SHA256.hex(buildID ?? release).prefix(12)))"
    }

    /// For people.
    public var summary: String {
        var text = "Linux \(release) \(machine)"
        if let buildID { text += ", build id \(buildID.prefix(16))…" }
        if let android { text += ", Android \(android)" }
        if selinux != "absent" { text += ", SELinux \(selinux)" }
        return text
    }
}
