import CLibELF
import Foundation
import KprobeSupport
import Testing
import TestSupport

extension HostKernel {
    /// Real libbpf-tools programs as Debian builds them: each tool in the `libbpf-tools` package
    /// embeds its BPF object (a libbpf skeleton), which is taken out of the installed binary at
    /// test time and checked with `compile --verify`, the loader path every object takes (twin
    /// selection, maps userspace would size, placeholders). The objects were compiled by Debian's
    /// clang against an older kernel, so what fails here fails because of this kernel: fentry-only
    /// tools (no trampolines), fields renamed since (CO-RE relocation fails) or functions not built in.
    @Suite(.serialized, .enabled(if: isRoot, "loads BPF programs: run as root"))
    struct LibbpfToolsObjectsTests {
        static let scratch = try! ScratchDirectory()

        @Test func debianLibbpfToolsObjectsPassTheVerifier() throws {
            let objects = try LibbpfToolsObjects.extract(into: Self.scratch.path + "/objects")
            #expect(objects.count >= 50, "libbpf-tools gave only \(objects.count) objects: is the package installed (make test installs it)?")
            var failures: [String] = []
            for object in objects {
                let result = try Tool.run(["compile", "--verify", object], environment: ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"])
                // A failure must be the kernel's answer (5 rejected, 6 nothing attachable here),
                // said in a message, never a crash or an internal error.
                #expect([0, 5, 6].contains(result.status) && !result.uncaughtSignal, "\(object): \(result.status) \(result.stderr)")
                if result.status != 0 {
                    #expect(result.stderr.contains("kprobe-run: error:"), "\(object): \(result.stderr)")
                    failures.append((object as NSString).lastPathComponent + " (exit \(result.status))")
                }
            }
            let passed = objects.count - failures.count
            #expect(Double(passed) >= 0.85 * Double(objects.count), "\(passed)/\(objects.count) passed; failed: \(failures.joined(separator: ", "))")
        }

        /// An object with no `.kprobe_run.meta` still runs: count tables and histograms come from BTF.
        @Test func debianRunqlatObjectPrintsAHistogram() throws {
            let objects = try LibbpfToolsObjects.extract(into: Self.scratch.path + "/objects")
            let runqlat = try #require(objects.first { $0.hasSuffix("/runqlat.bpf.o") }, "no runqlat in libbpf-tools")
            let result = try Tool.run([runqlat, "-d", "2"], environment: ["KPROBE_RUN_CACHE_DIR": Self.scratch.path + "/cache"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("distribution"), "\(result.stdout.prefix(2000))")
        }
    }
}

/// The BPF objects inside the installed libbpf-tools binaries.
enum LibbpfToolsObjects {
    /// The start of a 64-bit little-endian ELF header.
    static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1]

    static func extract(into directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let listing = try String(contentsOfFile: "/var/lib/dpkg/info/libbpf-tools.list", encoding: .utf8)
        var written: [String] = []
        for path in listing.split(separator: "\n").map(String.init) where path.hasPrefix("/usr/sbin/") {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            // A skeleton holds one object; the first BPF ELF after the binary's own header is it.
            if let object = embeddedObject(in: [UInt8](data)) {
                let output = directory + "/" + (path as NSString).lastPathComponent + ".bpf.o"
                try Data(object).write(to: URL(fileURLWithPath: output))
                written.append(output)
            }
        }
        return written.sorted()
    }

    static func embeddedObject(in bytes: [UInt8]) -> ArraySlice<UInt8>? {
        var copy = bytes
        return copy.withUnsafeMutableBytes { memory -> ArraySlice<UInt8>? in
            var start = 1
            while let found = bytes[start...].firstRange(of: magic)?.lowerBound {
                start = found + 1
                // libelf reads the header; the section header table ends the object.
                guard let image = ELFImage(memory: UnsafeMutableRawBufferPointer(rebasing: memory[found...])),
                      let header = image.header, header.e_machine == UInt16(EM_BPF) else { continue }
                let end = found + Int(header.e_shoff) + Int(header.e_shentsize) * Int(header.e_shnum)
                if end > found, end <= bytes.count { return bytes[found..<end] }
            }
            return nil
        }
    }
}
