import Testing
@testable import KprobeSupport
import TestSupport

@Suite struct SHA256Tests {
    /// Both block functions: the CPU's SHA-256 instructions (where this CPU has them) and the Swift rounds.
    static let paths = [true, false]

    private static func hex(_ bytes: [UInt8], hardware: Bool) -> String {
        var hasher = SHA256()
        hasher.usesHardware = hardware
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.hexDigest()
    }

    // FIPS 180-4 examples (NIST's SHA256.pdf and SHA2_Additional.pdf).
    @Test(arguments: paths) func nistVectors(hardware: Bool) {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
            (String(repeating: "a", count: 1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ]
        for (message, digest) in vectors {
            #expect(Self.hex(Array(message.utf8), hardware: hardware) == digest, "\(message.prefix(20))… (\(message.utf8.count) bytes)")
        }
    }

    /// The hardware path is taken exactly when the kernel reports the instructions (`sha_ni` on
    /// x86-64, `sha2` on arm64 in /proc/cpuinfo), so the comparison below does compare two paths.
    @Test func hardwareDetectionAgreesWithTheKernel() throws {
        let cpuinfo = try FileSystem.readString("/proc/cpuinfo")
        let flags = Set(cpuinfo.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
        #if arch(x86_64)
        #expect(SHA256.hardwareAvailable == flags.contains("sha_ni"))
        #elseif arch(arm64)
        #expect(SHA256.hardwareAvailable == flags.contains("sha2"))
        #else
        #expect(!SHA256.hardwareAvailable)
        #endif
    }

    /// Random lengths 0…5000 in random update() chunks (raw buffers and byte sequences, so that
    /// blocks arrive split, buffered, and in multi-block runs): the same digest from both paths.
    @Test func randomInputsAgreeOnBothPaths() {
        var random = SeededGenerator(seed: 0x5348_4132_3536)
        for _ in 0..<300 {
            let bytes = (0..<Int(random.next() % 5001)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            var cuts = (0..<Int(random.next() % 6)).map { _ in bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count + 1)) }
            cuts = ([0] + cuts + [bytes.count]).sorted()
            var digests: [String] = []
            for hardware in Self.paths {
                var hasher = SHA256()
                hasher.usesHardware = hardware
                for (index, (start, end)) in zip(cuts, cuts.dropFirst()).enumerated() {
                    if index % 2 == 0 {
                        bytes[start..<end].withUnsafeBytes { hasher.update($0) }
                    } else {
                        hasher.update(bytes[start..<end])
                    }
                }
                digests.append(hasher.hexDigest())
            }
            #expect(digests[0] == digests[1], "\(bytes.count) bytes cut at \(cuts)")
            #expect(digests[0] == Self.hex(bytes, hardware: false), "\(bytes.count) bytes cut at \(cuts)")
        }
    }

    @Test func chunkedUpdatesMatchOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var chunked = SHA256()
        bytes[0..<3].withUnsafeBytes { chunked.update($0) }
        chunked.update(bytes[3..<130])
        bytes[130...].withUnsafeBytes { chunked.update($0) }
        #expect(chunked.hexDigest() == SHA256.hex(bytes))
    }
}
