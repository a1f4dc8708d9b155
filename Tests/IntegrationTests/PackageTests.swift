import Foundation
import KprobeSupport
import Testing
import TestSupport

extension HostKernel {
    /// The Debian package from `make deb`, installed with dpkg into a fresh root: kprobe-run finds
    /// its workers there and runs a probe from the installed files alone; the manual page and the
    /// completions work. `make test-package` builds the package and runs these.
    @Suite(.serialized, .enabled(if: isRoot && Package.deb != nil, "needs root and the package: make test-package"))
    struct PackageTests {
        static let root = try! ScratchDirectory("deb-root")
        static let installed: Result<Void, any Error> = Result { try Package.install(into: root.path) }

        var bin: String { Self.root.path + "/usr/bin/kprobe-run" }

        /// A clean environment: nothing of the build tree on PATH, no worker override.
        var environment: [String: String] {
            ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "KPROBE_RUN_CACHE_DIR": Self.root.path + "/cache"]
        }

        @Test func dependsNameTheLibrariesAndAptCanInstallIt() throws {
            let info = try Package.shell("dpkg-deb --field \"$1\" Depends", Package.deb!)
            for dependency in ["libbpf1", "libelf1", "libarchive13", "libclang1-14", "libbpf-dev", "libclang-common-14-dev"] {
                #expect(info.output.contains(dependency), "Depends: \(info.output)")
            }
            let apt = try Package.shell("apt-get install --simulate --no-install-recommends \"$1\"", Package.deb!)
            #expect(apt.status == 0, "\(apt.output)")
        }

        @Test func versionNamesTheInstalledWorker() throws {
            try Self.installed.get()
            let version = try runCollecting([bin, "--version"], environment: environment, directory: "/")
            #expect(version.status == 0, "\(version.output)")
            #expect(version.output.contains("build: release"), "\(version.output)")
            #expect(version.output.contains("libbpf: v1"), "\(version.output)")
            #expect(version.output.contains("clang version 14") && version.output.contains(Self.root.path + "/usr/libexec/kprobe-run/kprobe-run-cc"), "\(version.output)")
        }

        @Test func runsAnExampleFromTheInstalledFiles() throws {
            try Self.installed.get()
            let example = Self.root.path + "/usr/share/doc/kprobe-run/examples/syscount.c"
            // syscount prints a map at exit: no trace_pipe, which another tracer on the machine may hold.
            let run = try runCollecting([bin, example, "-d", "2"], environment: environment, directory: "/")
            #expect(run.status == 0, "\(run.output)")
            #expect(run.output.contains("syscalls"), "\(run.output)")
            #expect(!run.output.contains(".build/"), "\(run.output)")
            let bcc = try runCollecting([bin, "compile", "--dialect", "bcc", "--headers", TestInputs.testKernelArchive,
                                         Self.root.path + "/usr/share/doc/kprobe-run/examples/bcc/opencount.c", "-o", Self.root.path + "/opencount.o"],
                                        environment: environment, directory: "/")
            #expect(bcc.status == 0 || !FileSystem.isRegularFile(TestInputs.testKernelArchive), "the BCC rewriter from libexec: \(bcc.output)")
        }

        @Test func manualPageAndCompletions() throws {
            try Self.installed.get()
            let man = try Package.shell("MANPATH=\"$1/usr/share/man\" MANWIDTH=100 man kprobe-run 2>&1 | col -b", Self.root.path)
            #expect(man.status == 0, "\(man.output)")
            #expect(man.output.contains("KPROBE-RUN(1)") && man.output.contains("Check what this kernel and process can trace"), "\(man.output.prefix(400))")
            #expect(!man.output.contains("warning"), "\(man.output.prefix(400))")
            let completion = try Package.shell("""
                source "$1/usr/share/bash-completion/completions/kprobe-run"
                COMP_WORDS=(kprobe-run hea); COMP_CWORD=1; COMP_LINE="kprobe-run hea"; COMP_POINT=${#COMP_LINE}
                _kprobe-run kprobe-run hea kprobe-run
                echo "${COMPREPLY[@]}"
                """, Self.root.path)
            #expect(completion.output.trimmingCharacters(in: .whitespacesAndNewlines) == "headers", "\(completion.output)")
            for file in ["/usr/share/zsh/vendor-completions/_kprobe-run", "/usr/share/fish/vendor_completions.d/kprobe-run.fish"] {
                #expect(FileManager.default.fileExists(atPath: Self.root.path + file), "\(file)")
            }
        }
    }
}

/// The package `make deb` writes, and how it is installed for the tests.
enum Package {
    static var deb: String? {
        let directory = Tool.packageRoot + "/.build/deb"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("kprobe-run_") && $0.hasSuffix(".deb") }.sorted().last.map { directory + "/" + $0 }
    }

    /// `dpkg --root` into a root with an empty dpkg database: only the package's own files land
    /// there (its dependencies are this machine's, which is what `apt install` would provide).
    static func install(into root: String) throws {
        let result = try shell("""
            mkdir -p "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/var/lib/dpkg/triggers"
            touch "$1/var/lib/dpkg/status" "$1/var/lib/dpkg/available"
            dpkg --root="$1" --force-depends --force-script-chrootless -i "$2" 2>&1
            """, root, deb!)
        guard result.status == 0 else { throw Failure(.internal, "dpkg -i failed: \(result.output)") }
    }

    static func shell(_ script: String, _ arguments: String...) throws -> (status: Int32, output: String) {
        try runCollecting(["/bin/bash", "-c", script, "bash"] + arguments, directory: "/")
    }
}
