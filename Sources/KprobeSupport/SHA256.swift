import CSHA256

/// SHA-256 (FIPS 180-4), for cache keys and archive identities.
///
/// Written here rather than pulled from a crypto package: it is the only primitive the tool needs,
/// and a dependency on BoringSSL would double the build time of a static device binary. Whole blocks
/// go to the CPU's SHA-256 instructions (x86-64 SHA-NI, ARMv8 Crypto Extension) through `CSHA256`
/// when the CPU has them: a first run hashes the kheaders archive (~4 MiB) before anything else, which
/// takes the Swift rounds below ~15 ms on this project's x86-64 machine and SHA-NI ~2 ms. The Swift
/// rounds stay for every other CPU.
public struct SHA256: Sendable {
    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0
    /// Whether whole blocks go to `CSHA256`; tests turn it off to compare with the Swift rounds.
    var usesHardware = SHA256.hardwareAvailable

    /// Whether this CPU has SHA-256 instructions `CSHA256` can use (asked once per process).
    static let hardwareAvailable = csha256_hardware_available()

    public init() { buffer.reserveCapacity(64) }

    public mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes {
            length &+= 1
            buffer.append(byte)
            if buffer.count == 64 { compressBuffer() }
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        if !buffer.isEmpty {
            while index < bytes.count, buffer.count < 64 {
                buffer.append(bytes[index])
                index += 1
            }
            if buffer.count == 64 { compressBuffer() }
        }
        // All whole blocks in one call, straight from the caller's memory.
        let wholeBlocks = (bytes.count - index) / 64 * 64
        if wholeBlocks > 0 {
            compress(blocks: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + wholeBlocks)]))
            index += wholeBlocks
        }
        while index < bytes.count {
            buffer.append(bytes[index])
            index += 1
        }
        length &+= UInt64(bytes.count)
    }

    public mutating func update(_ string: String) {
        var copy = string
        copy.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail = buffer
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        tail.withUnsafeBytes { compress(blocks: $0) }
        buffer.removeAll()
        let words = [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7]
        return words.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> UInt32(24 - 8 * $0)) } }
    }

    /// Lower-case hex of the whole digest.
    public mutating func hexDigest() -> String { Hex.encode(finalize()) }

    public static func hex(_ string: String) -> String {
        var hasher = SHA256()
        hasher.update(string)
        return hasher.hexDigest()
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.hexDigest()
    }

    private mutating func compressBuffer() {
        do {
            // A second reference, released before the buffer is emptied (no copy): `compress` mutates self.
            let block = buffer
            block.withUnsafeBytes { compress(blocks: $0) }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Compresses `blocks`, a whole number of 64-byte blocks.
    private mutating func compress(blocks: UnsafeRawBufferPointer) {
        guard let base = blocks.baseAddress, !blocks.isEmpty else { return }
        if usesHardware {
            withUnsafeMutablePointer(to: &state) { tuple in
                tuple.withMemoryRebound(to: UInt32.self, capacity: 8) {
                    csha256_compress($0, base.assumingMemoryBound(to: UInt8.self), blocks.count / 64)
                }
            }
            return
        }
        // On the stack: an array per 64-byte block made hashing a 4 MiB archive take ~30 ms.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
            withUnsafeBytes(of: csha256_round_constants) { constants in
                let k = constants.assumingMemoryBound(to: UInt32.self)
                for offset in stride(from: 0, to: blocks.count, by: 64) {
                    compress(UnsafeRawBufferPointer(rebasing: blocks[offset..<(offset + 64)]), schedule: schedule, k: k)
                }
            }
        }
    }

    private mutating func compress(
        _ block: UnsafeRawBufferPointer, schedule w: UnsafeMutableBufferPointer<UInt32>, k: UnsafeBufferPointer<UInt32>
    ) {
        var index = 0
        for t in 0..<16 {
            var word: UInt32 = 0
            for _ in 0..<4 {
                word = word << 8 | UInt32(block[index])
                index += 1
            }
            w[t] = word
        }
        for t in 16..<64 {
            let s0 = w[t - 15].rotr(7) ^ w[t - 15].rotr(18) ^ (w[t - 15] >> 3)
            let s1 = w[t - 2].rotr(17) ^ w[t - 2].rotr(19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = state
        for t in 0..<64 {
            let s1 = e.rotr(6) ^ e.rotr(11) ^ e.rotr(25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ ch &+ k[t] &+ w[t]
            let s0 = a.rotr(2) ^ a.rotr(13) ^ a.rotr(22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            h = g; g = f; f = e; e = d &+ t1
            d = c; c = b; b = a; a = t1 &+ t2
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d, state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
    }
}

extension UInt32 {
    fileprivate func rotr(_ n: UInt32) -> UInt32 { self >> n | self << (32 - n) }
}

public enum Hex {
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
