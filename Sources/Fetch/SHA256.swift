// SHA256: FIPS 180-4 SHA-256, streamed, for the checksums of downloads (`sha256` params, done
// metadata). fidq's own, so a release build no longer compiles BoringSSL for one hash (swift-crypto
// cost 100–120 s of a 290 s release build on a 2-core Zen 3, beyond `ops/demo`'s 10 minutes).
// Blocks run in C (CSHA256): on the CPU's SHA extensions when it has them (Zen 3 and Zen 4 do),
// else on portable rounds, which the tests also hold to the standard's examples.
//
//     var h = SHA256()
//     h.update(bufferPointer: chunk)      // any number of chunks, any sizes
//     hex(h.finalize())                   // 64 hex digits; `finalize` leaves `h` usable

import CSHA256

/// A SHA-256 hasher (FIPS 180-4 §6.2): 64-byte blocks, big-endian words, the length in bits last.
public struct SHA256: Sendable {
    /// The 32 bytes of a digest, in order.
    public struct Digest: Sequence, Equatable, Sendable, CustomStringConvertible {
        public let bytes: [UInt8]
        public func makeIterator() -> IndexingIterator<[UInt8]> { bytes.makeIterator() }
        public var description: String { hex(bytes) }
    }

    /// H(0): the first 32 bits of the fractional parts of the square roots of the first 8 primes.
    private var state: SIMD8<UInt32> = [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a,
                                        0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19]
    /// Bytes of an unfinished block (fewer than 64).
    private var tail: [UInt8] = []
    /// Bytes hashed so far.
    private var count: UInt64 = 0
    /// Whether blocks run on the SHA extensions (false: the portable rounds).
    let extensions: Bool

    /// Whether this CPU has the SHA extensions.
    static let cpuHasExtensions = fidq_sha256_ni_available() != 0

    /// - Parameter portable: run the portable rounds even where the SHA extensions exist (tests).
    public init(portable: Bool = false) {
        extensions = !portable && Self.cpuHasExtensions
        tail.reserveCapacity(64)
    }

    /// Hashes `data` after everything given before.
    public mutating func update(bufferPointer data: UnsafeRawBufferPointer) {
        guard var p = data.baseAddress, data.count > 0 else { return }
        var n = data.count
        let ni = extensions
        count &+= UInt64(n)
        if !tail.isEmpty {
            let take = Swift.min(64 - tail.count, n)
            tail.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
            p += take
            n -= take
            guard tail.count == 64 else { return }
            tail.withUnsafeBytes { Self.compress(&state, $0.baseAddress!, blocks: 1, extensions: ni) }
            tail.removeAll(keepingCapacity: true)
        }
        let blocks = n / 64
        if blocks > 0 { Self.compress(&state, p, blocks: blocks, extensions: ni) }
        if n > blocks * 64 { tail.append(contentsOf: UnsafeRawBufferPointer(start: p + blocks * 64, count: n - blocks * 64)) }
    }

    /// The digest of everything given so far (padding: 0x80, zeros to 56 mod 64, the bit length).
    public func finalize() -> Digest {
        var s = state
        var last = tail
        last.append(0x80)
        while last.count % 64 != 56 { last.append(0) }
        let bits = count &* 8
        for i in stride(from: 56, through: 0, by: -8) { last.append(UInt8(truncatingIfNeeded: bits >> UInt64(i))) }
        last.withUnsafeBytes { Self.compress(&s, $0.baseAddress!, blocks: last.count / 64, extensions: extensions) }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in 0..<8 { for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: s[i] >> UInt32(shift))) } }
        return Digest(bytes: out)
    }

    /// FIPS 180-4 §6.2.2 over `blocks` consecutive 64-byte blocks at `p` (CSHA256), on the SHA
    /// extensions when `extensions`.
    private static func compress(_ state: inout SIMD8<UInt32>, _ p: UnsafeRawPointer, blocks: Int, extensions: Bool) {
        withUnsafeMutableBytes(of: &state) {
            let h = $0.baseAddress!.assumingMemoryBound(to: UInt32.self), data = p.assumingMemoryBound(to: UInt8.self)
            if extensions { fidq_sha256_ni(h, data, blocks) } else { fidq_sha256_portable(h, data, blocks) }
        }
    }
}
