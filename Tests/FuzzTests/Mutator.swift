import TestSupport

/// A seeded mutator of byte strings for the fuzzing tests: the same seed gives the same inputs,
/// so a failure is reproduced by its seed and iteration alone.
struct Mutator: RandomNumberGenerator {
    private var generator: SeededGenerator

    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// `input` with one to four random edits: bit flips, boundary values, truncation, a copied
    /// block, inserted or deleted bytes.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &self) {
            guard !bytes.isEmpty else { return [UInt8.random(in: 0...255, using: &self)] }
            let at = Int.random(in: 0..<bytes.count, using: &self)
            switch Int.random(in: 0..<7, using: &self) {
            case 0: bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &self)
            case 1: bytes[at] = [0, 0xff, 0x7f, 0x80, 0x01, 0x2f, 0x2e].randomElement(using: &self)!
            case 2: bytes.removeSubrange(Int.random(in: at...bytes.count, using: &self)...)
            case 3:
                let length = Int.random(in: 1...min(512, bytes.count - at), using: &self)
                let to = Int.random(in: 0...bytes.count, using: &self)
                bytes.insert(contentsOf: bytes[at..<(at + length)], at: to)
            case 4: bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &self)).map { _ in UInt8.random(in: 0...255, using: &self) }, at: at)
            case 5: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...64, using: &self)))
            default:
                // A 4- or 8-byte field set to a boundary: sizes, offsets and counts in headers.
                let width = Bool.random(using: &self) ? 4 : 8
                guard at + width <= bytes.count else { continue }
                let value: UInt64 = [0, 1, 0x7fff_ffff, 0xffff_ffff, .max, UInt64(bytes.count)].randomElement(using: &self)!
                for index in 0..<width { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
            }
        }
        return bytes
    }
}
