// SHA256: FIPS 180-4 SHA-256, streamed, for the checksums of downloads (`sha256` params, done
// metadata). fidq's own, so a release build no longer compiles BoringSSL for one hash (swift-crypto
// cost 100–120 s of a 290 s release build on a 2-core Zen 3, beyond `ops/demo`'s 10 minutes).
// Blocks run on the CPU's SHA extensions when it has them (CSHA256: Zen 3 and Zen 4 do), else on
// the portable Swift rounds below, which the tests also hold to the standard's examples.
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
    /// Whether blocks run on the SHA extensions (false: the Swift rounds).
    let extensions: Bool

    /// Whether this CPU has the SHA extensions.
    static let cpuHasExtensions = fidq_sha256_ni_available() != 0

    /// - Parameter portable: run the Swift rounds even where the SHA extensions exist (tests).
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

    /// K: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    @inline(__always) private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    /// One round (§6.2.2 step 3) with the eight working variables renamed instead of moved: the
    /// caller rotates the arguments, so only d and h change.
    @inline(__always) private static func round(
        _ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
        _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32, _ kw: UInt32
    ) {
        let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ (g ^ (e & (f ^ g))) &+ kw
        d &+= t1
        h = t1 &+ (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) | (c & (a | b)))
    }

    /// FIPS 180-4 §6.2.2 over `blocks` consecutive 64-byte blocks at `p`, on the SHA extensions
    /// when `extensions`.
    private static func compress(_ state: inout SIMD8<UInt32>, _ p: UnsafeRawPointer, blocks: Int, extensions: Bool) {
        if extensions {
            withUnsafeMutableBytes(of: &state) {
                fidq_sha256_ni($0.baseAddress!.assumingMemoryBound(to: UInt32.self), p.assumingMemoryBound(to: UInt8.self), blocks)
            }
        } else {
            rounds(&state, p, blocks: blocks)
        }
    }

    /// The portable path: FIPS 180-4 §6.2.2 in Swift.
    private static func rounds(_ state: inout SIMD8<UInt32>, _ p: UnsafeRawPointer, blocks: Int) {
        k.withUnsafeBufferPointer { k in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                var (h0, h1, h2, h3, h4, h5, h6, h7) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
                for block in 0..<blocks {
                    let base = p + block * 64
                    for t in 0..<16 { w[t] = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: t * 4, as: UInt32.self)) }
                    for t in 16..<64 {
                        let x = w[t - 15], y = w[t - 2]
                        let s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
                        let s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >> 10)
                        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                    }
                    var (a, b, c, d, e, f, g, h) = (h0, h1, h2, h3, h4, h5, h6, h7)
                    for t in stride(from: 0, to: 64, by: 8) {
                        round(a, b, c, &d, e, f, g, &h, k[t] &+ w[t])
                        round(h, a, b, &c, d, e, f, &g, k[t + 1] &+ w[t + 1])
                        round(g, h, a, &b, c, d, e, &f, k[t + 2] &+ w[t + 2])
                        round(f, g, h, &a, b, c, d, &e, k[t + 3] &+ w[t + 3])
                        round(e, f, g, &h, a, b, c, &d, k[t + 4] &+ w[t + 4])
                        round(d, e, f, &g, h, a, b, &c, k[t + 5] &+ w[t + 5])
                        round(c, d, e, &f, g, h, a, &b, k[t + 6] &+ w[t + 6])
                        round(b, c, d, &e, f, g, h, &a, k[t + 7] &+ w[t + 7])
                    }
                    h0 &+= a; h1 &+= b; h2 &+= c; h3 &+= d; h4 &+= e; h5 &+= f; h6 &+= g; h7 &+= h
                }
                state = [h0, h1, h2, h3, h4, h5, h6, h7]
            }
        }
    }
}
