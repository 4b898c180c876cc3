// RNG: a seeded random generator with explicit state (xoshiro256**, seeded through splitmix64).

/// A deterministic random generator. Every function in fidq that samples or initialises takes
/// one of these `inout`; there is no global generator, so a run is reproducible from its seed.
public struct RNG: RandomNumberGenerator, Sendable, Equatable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    /// A cached second normal deviate from Box–Muller.
    private var spareNormal: Double?

    /// A generator whose whole sequence is fixed by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
        spareNormal = nil
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    /// The whole state (four xoshiro words and the cached normal deviate), so a training
    /// checkpoint can resume the exact sequence.
    public struct State: Codable, Equatable, Sendable {
        /// xoshiro256** words as 16 hex digits each (JSON numbers cannot hold every UInt64).
        public var words: [String]
        /// The cached second Box–Muller deviate, as its bit pattern in hex (nil: none cached).
        public var spareNormal: String?
    }

    /// The state to save.
    public var state: State {
        func hex(_ v: UInt64) -> String {
            let h = String(v, radix: 16)
            return String(repeating: "0", count: 16 - h.count) + h
        }
        return State(words: [s.0, s.1, s.2, s.3].map(hex), spareNormal: spareNormal.map { hex($0.bitPattern) })
    }

    /// A generator continuing exactly where the one that gave `state` stood; nil when malformed.
    public init?(state: State) {
        let w = state.words.compactMap { UInt64($0, radix: 16) }
        guard w.count == 4, state.words.count == 4, w != [0, 0, 0, 0] else { return nil }
        s = (w[0], w[1], w[2], w[3])
        if let text = state.spareNormal {
            guard let bits = UInt64(text, radix: 16) else { return nil }
            spareNormal = Double(bitPattern: bits)
        } else {
            spareNormal = nil
        }
    }

    public static func == (a: RNG, b: RNG) -> Bool { a.state == b.state }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }

    /// The four xoshiro words, for generators that step several streams in vector lanes
    /// (`Dropout`'s mask).
    var words: SIMD4<UInt64> { SIMD4(s.0, s.1, s.2, s.3) }

    /// Uniform in [0, 1) with 24 random bits, so every value is an exact Float.
    public mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * nextFloat() }

    /// A normal deviate (Box–Muller, in Double).
    public mutating func normal(mean: Float = 0, std: Float = 1) -> Float {
        if let z = spareNormal {
            spareNormal = nil
            return mean + std * Float(z)
        }
        var u1 = nextDouble()
        while u1 == 0 { u1 = nextDouble() }
        let u2 = nextDouble()
        let r = (-2 * _log(u1)).squareRoot()
        spareNormal = r * _sin(2 * Double.pi * u2)
        return mean + std * Float(r * _cos(2 * Double.pi * u2))
    }

    /// `count` uniform values in [lo, hi).
    public mutating func uniformArray(_ count: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(lo, hi) }
    }

    /// `count` normal values.
    public mutating func normalArray(_ count: Int, mean: Float = 0, std: Float = 1) -> [Float] {
        (0..<count).map { _ in normal(mean: mean, std: std) }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@inline(__always) private func _log(_ x: Double) -> Double { log(x) }
@inline(__always) private func _sin(_ x: Double) -> Double { sin(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { cos(x) }
