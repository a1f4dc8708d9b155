import KprobeSupport

/// `kprobe-run doctor`'s view of where kernel headers could come from on this machine.
public enum HeaderChecks {
    public static func run() -> [DoctorCheck] {
        [kheaders(), modulesBuild()]
    }

    /// kheaders: built in (the archive is there and no module of that name), a loaded module, a
    /// module file that kprobe-run would load, or absent.
    static func kheaders() -> DoctorCheck {
        let release = RunningKernel.release
        if let archive = KheadersModule.archivePath {
            // A loadable module has /sys/module/NAME/initstate; a built-in one has no such file.
            let builtIn = !FileSystem.exists("/sys/module/kheaders/initstate")
            return DoctorCheck("kheaders", .ok, builtIn ? "built in: \(archive)" : "module, loaded: \(archive)")
        }
        if let module = KheadersModule.moduleFiles(release: release).first {
            return DoctorCheck("kheaders", .ok, "module, not loaded: \(module) (kprobe-run loads it when it needs headers and unloads it again)")
        }
        return DoctorCheck("kheaders", .missing, "absent: no /sys/kernel/kheaders.tar.xz and no kheaders.ko for \(release)",
                           fix: "a kernel with CONFIG_IKHEADERS, else kernel headers in /lib/modules or --headers (BTF probes need none)")
    }

    static func modulesBuild() -> DoctorCheck {
        let build = "/lib/modules/\(RunningKernel.release)/build"
        if FileSystem.isDirectory(build + "/include") {
            return DoctorCheck("lib-modules-headers", .ok, "\(build) has include/")
        }
        return DoctorCheck("lib-modules-headers", .missing, "no kernel headers in \(build)",
                           fix: "install linux-headers-\(RunningKernel.release) (not needed when kheaders or BTF is there)")
    }
}
