// SplitMix: the fuzz tests' small deterministic generator, and the byte damage they share.

/// SplitMix64: a fixed seed gives every machine the same fuzz cases.
public struct SplitMix {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `valid` damaged as a disk or a bad copy would: 1 to 4 bytes changed (a third of them
    /// replaced by a random byte, the rest with one bit flipped) at positions `position` draws
    /// (anywhere by default), and on every seventh round cut to a random prefix.
    public mutating func damaged(_ valid: [UInt8], round: Int, position: ((inout SplitMix) -> Int)? = nil) -> [UInt8] {
        var bytes = valid
        guard !bytes.isEmpty else { return bytes }
        for _ in 0..<(1 + Int(next() % 4)) {
            let i = position.map { $0(&self) } ?? Int(next() % UInt64(bytes.count))
            bytes[i] = next() % 3 == 0 ? UInt8(truncatingIfNeeded: next()) : bytes[i] ^ (1 << UInt8(next() % 8))
        }
        if round % 7 == 0 { bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count)))) }
        return bytes
    }
}
