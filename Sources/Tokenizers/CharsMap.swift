// CharsMap: SentencePiece's precompiled normalisation map (e.g. nmt_nfkc) and its normaliser.

/// The `precompiled_charsmap` blob of a SentencePiece model: a little-endian `UInt32` trie size, a
/// darts-clone double array of that many bytes, then NUL-terminated replacement strings. Follows
/// sentencepiece `normalizer.cc` (`Normalizer::NormalizePrefix`, `Normalize`), which the Hugging Face
/// `Precompiled` normaliser also reads.
struct CharsMap: Sendable {
    private let units: [UInt32]
    private let strings: [UInt8]
    /// Bytes that can start a rule; any other ASCII byte maps to itself (the fast path).
    private let startsRule: [Bool]
    /// A model's USER_DEFINED pieces: sentencepiece's `PrefixMatcher`, tried before the rules in `normalize`,
    /// so the longest one at a position is copied unchanged.
    private var userDefined: DoubleArrayTrie? = nil
    /// Bytes at which `normalize` must look up a rule or a user-defined piece.
    private var startsPrefix: [Bool]

    /// No rules: every character maps to itself (a model without a charsmap).
    static let identity = CharsMap()

    private init() {
        units = []
        strings = [0]
        startsRule = [Bool](repeating: false, count: 256)
        startsPrefix = startsRule
    }

    init(blob: [UInt8], path: String) throws {
        guard blob.count >= 4 else {
            throw TokenizerError.malformed(
                path: path, field: "precompiled_charsmap", expected: "at least 4 bytes", found: "\(blob.count)")
        }
        let trieSize = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
        guard trieSize % 4 == 0, 4 + trieSize <= blob.count, trieSize >= 4 else {
            throw TokenizerError.malformed(
                path: path, field: "precompiled_charsmap", expected: "a trie size (multiple of 4) within the blob",
                found: "\(trieSize) of \(blob.count) bytes")
        }
        var u = [UInt32](repeating: 0, count: trieSize / 4)
        for i in 0..<u.count {
            let o = 4 + 4 * i
            u[i] = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
        }
        units = u
        strings = Array(blob[(4 + trieSize)...]) + [0]
        // A byte starts a rule when the root has a transition on it.
        var starts = [Bool](repeating: true, count: 256)
        let root = Int((u[0] >> 10) << ((u[0] & (1 << 9)) >> 6))
        for b in 0..<128 {
            let pos = root ^ b
            starts[b] = pos < u.count && Int(u[pos] & ((1 << 31) | 0xFF)) == b
        }
        startsRule = starts
        startsPrefix = starts
    }

    /// This map with the user-defined pieces `symbols` matched first by `normalize` (sentencepiece's
    /// `Normalizer::NormalizePrefix`).
    func matching(userDefined symbols: [[UInt8]]) throws -> CharsMap {
        let keys = symbols.filter { !$0.isEmpty }
        if keys.isEmpty { return self }
        var m = self
        m.userDefined = try DoubleArrayTrie(keys: keys, ids: keys.indices.map { Int32($0) })
        for k in keys { m.startsPrefix[Int(k[0])] = true }
        return m
    }

    /// Shortest rule matching a prefix of `p[0..<n]`: its replacement, or nil.
    private func firstRule(_ p: UnsafePointer<UInt8>, _ n: Int) -> ArraySlice<UInt8>? {
        units.withUnsafeBufferPointer { u -> ArraySlice<UInt8>? in
            if u.isEmpty { return nil }
            var pos = Int((u[0] >> 10) << ((u[0] & (1 << 9)) >> 6))
            for i in 0..<n {
                let c = Int(p[i])
                pos ^= c
                if pos >= u.count || Int(u[pos] & ((1 << 31) | 0xFF)) != c { return nil }
                let unit = u[pos]
                pos ^= Int((unit >> 10) << ((unit & (1 << 9)) >> 6))
                if pos >= u.count { return nil }
                if (unit >> 8) & 1 == 1 {
                    let value = min(Int(u[pos] & ((1 << 31) - 1)), strings.count)
                    var end = value
                    while end < strings.count, strings[end] != 0 { end += 1 }
                    return strings[value..<end]
                }
            }
            return nil
        }
    }

    /// Appends the normalisation of `input` (valid UTF-8) as Hugging Face's `Precompiled` normaliser does it:
    /// per extended grapheme cluster, a cluster under 6 bytes is replaced whole by the *shortest* rule
    /// matching its start, otherwise each character by its own rule (`tokenizers` normalizers/precompiled.rs).
    /// Returns how many leading appended bytes HF aligns to the first `zeroChars` characters of `input`
    /// (see `AlignedPrefix`); 0 when `zeroChars` is 0.
    @discardableResult
    func normalizeGraphemes(_ input: UnsafeBufferPointer<UInt8>, into out: inout [UInt8], zeroChars: Int = 0) -> Int {
        guard let base = input.baseAddress, !input.isEmpty else { return 0 }
        var aligned = AlignedPrefix(zeroChars: zeroChars, start: out.count)
        // ASCII without CR: every character is a cluster of its own.
        if !input.contains(where: { $0 >= 0x80 || $0 == 0x0D }) {
            for i in 0..<input.count {
                let b = input[i]
                let from = out.count
                if startsRule[Int(b)], let r = firstRule(base + i, 1) {
                    out.append(contentsOf: r)
                    if zeroChars > 0 { aligned.replace(old: 1, out, from) }
                } else {
                    out.append(b)
                    if zeroChars > 0 { aligned.replace(old: 1, out, from) }
                }
            }
            return aligned.finish()
        }
        for cluster in String(decoding: input, as: UTF8.self) {
            var g = Array(cluster.utf8)
            g.withUnsafeMutableBufferPointer { gb in
                let p = UnsafePointer(gb.baseAddress!)
                let from = out.count
                if gb.count < 6, let r = firstRule(p, gb.count) {
                    out.append(contentsOf: r)
                    if zeroChars > 0 {
                        aligned.replace(old: gb.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }, out, from)
                    }
                    return
                }
                var i = 0
                while i < gb.count {
                    let len = UTF8Decoding.length(lead: gb[i])
                    let from = out.count
                    if let r = firstRule(p + i, len) {
                        out.append(contentsOf: r)
                    } else {
                        out.append(contentsOf: gb[i..<(i + len)])
                    }
                    if zeroChars > 0 { aligned.replace(old: 1, out, from) }
                    i += len
                }
            }
        }
        return aligned.finish()
    }

    /// Follows the alignments HF's `Precompiled` gives its output, to count the leading output bytes aligned
    /// to the first `zeroChars` input characters. Precompiled lists (char, change) pairs: a replacement's
    /// characters get change 0, its last `new − old` get +1 (inserted), and a shorter one adds `new − old`
    /// to the last pair listed, even the previous replacement's. `NormalizedString::transform` then walks
    /// them: change ≤ 0 takes the next input character's alignment and skips `−change` more; +1 takes the
    /// alignment of the input character before (of offset 0 at the very start).
    struct AlignedPrefix {
        let zeroChars: Int
        let start: Int
        /// Input characters consumed by the pairs committed so far.
        private var consumed = 0
        /// The last pair, whose change a later replacement may still lower: its output end, or -1.
        private var pendingEnd = -1
        private var pendingChange = 0
        private var bytes = 0
        private var done = false

        init(zeroChars: Int, start: Int) {
            self.zeroChars = zeroChars
            self.start = start
        }

        /// `old` input characters were replaced by the characters of `out[from...]`.
        mutating func replace(old: Int, _ out: [UInt8], _ from: Int) {
            if done { return }
            var count = 0
            var k = from
            while k < out.count { count += 1; k += UTF8Decoding.length(lead: out[k]) }
            let diff = count - old
            var index = 0
            k = from
            while k < out.count {
                commit()
                k += UTF8Decoding.length(lead: out[k])
                pendingEnd = k
                pendingChange = diff > 0 && index >= count - diff ? 1 : 0
                index += 1
            }
            if diff < 0 && pendingEnd >= 0 { pendingChange += diff }
        }

        private mutating func commit() {
            guard pendingEnd >= 0, !done else { return }
            let zero: Bool
            if pendingChange <= 0 {
                zero = consumed < zeroChars
                consumed += 1 - pendingChange
            } else {
                zero = consumed == 0 || consumed - 1 < zeroChars
            }
            if zero { bytes = pendingEnd - start } else { done = true }
            pendingEnd = -1
        }

        mutating func finish() -> Int {
            commit()
            return bytes
        }
    }

    /// Appends the normalisation of `input` to `out`, as sentencepiece does with `spec` (remove extra
    /// whitespace, dummy prefix, `▁` for spaces). Invalid UTF-8 becomes U+FFFD, one byte at a time.
    func normalize(_ input: UnsafeBufferPointer<UInt8>, spec: SentencePieceNormalizerSpec, into out: inout [UInt8]) {
        guard let base = input.baseAddress, !input.isEmpty else { return }
        strings.withUnsafeBufferPointer { strs in
        units.withUnsafeBufferPointer { u in
        UTF8Decoding.replacement.withUnsafeBufferPointer { fffd in
            // The replacement of the longest rule at `p`, or the character itself, and the bytes consumed.
            func prefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> (UnsafeBufferPointer<UInt8>, Int) {
                if let ud = userDefined {
                    let m = ud.longestPrefix(p, n)
                    if m > 0 { return (UnsafeBufferPointer(start: p, count: m), m) }
                }
                let (length, value) = CharsMap.longest(u, p, n)
                if length > 0 {
                    let start = min(value, strs.count)
                    var end = start
                    while end < strs.count, strs[end] != 0 { end += 1 }
                    return (UnsafeBufferPointer(rebasing: strs[start..<end]), length)
                }
                let len = UTF8Decoding.validLength(p, n)
                if len == 0 { return (fffd, 1) }
                return (UnsafeBufferPointer(start: p, count: len), len)
            }
            let n = input.count
            var i = 0
            let removeExtra = spec.removeExtraWhitespaces
            let space: [UInt8] = spec.escapeWhitespaces ? [0xE2, 0x96, 0x81] : [0x20]
            // Leading whitespace (after normalisation) is dropped.
            if removeExtra {
                while i < n {
                    let (rep, used) = prefix(base + i, n - i)
                    if !(rep.count == 1 && rep[0] == 0x20) { break }
                    i += used
                }
            }
            if i >= n { return }
            let start = out.count
            out.reserveCapacity(start + 3 * (n - i) + 3)
            if spec.addDummyPrefix { out.append(contentsOf: space) }
            var prevSpace = removeExtra
            while i < n {
                let b = base[i]
                if b < 0x80 && !startsPrefix[Int(b)] {
                    // Fast path: plain ASCII maps to itself.
                    if b == 0x20 {
                        if !prevSpace { out.append(contentsOf: space) }
                        prevSpace = removeExtra
                    } else {
                        out.append(b)
                        prevSpace = false
                    }
                    i += 1
                    continue
                }
                let (rep, used) = prefix(base + i, n - i)
                var k = 0
                if prevSpace { while k < rep.count, rep[k] == 0x20 { k += 1 } }
                if k < rep.count {
                    while k < rep.count {
                        if rep[k] == 0x20 { out.append(contentsOf: space) } else { out.append(rep[k]) }
                        k += 1
                    }
                    prevSpace = rep[rep.count - 1] == 0x20
                }
                if !removeExtra { prevSpace = false }
                i += used
            }
            if removeExtra {
                while out.count - start >= space.count, out[(out.count - space.count)...].elementsEqual(space) {
                    out.removeLast(space.count)
                }
            }
        }
        }
        }
    }

    /// Longest rule matching a prefix of `p[0..<n]`: (matched bytes, offset of its replacement).
    @inline(__always)
    private static func longest(_ u: UnsafeBufferPointer<UInt32>, _ p: UnsafePointer<UInt8>, _ n: Int)
        -> (length: Int, value: Int)
    {
        if u.isEmpty { return (0, 0) }
        var length = 0
        var value = 0
        var pos = 0
        var unit = u[0]
        pos ^= Int((unit >> 10) << ((unit & (1 << 9)) >> 6))
        for i in 0..<n {
            let c = Int(p[i])
            pos ^= c
            if pos >= u.count { break }
            unit = u[pos]
            // label(): the low byte plus the leaf bit, so a leaf never matches a key byte.
            if Int(unit & ((1 << 31) | 0xFF)) != c { break }
            pos ^= Int((unit >> 10) << ((unit & (1 << 9)) >> 6))
            if pos >= u.count { break }
            if (unit >> 8) & 1 == 1 {
                length = i + 1
                value = Int(u[pos] & ((1 << 31) - 1))
            }
        }
        return (length, value)
    }
}

/// The `normalizer_spec` fields that shape normalisation.
struct SentencePieceNormalizerSpec: Sendable {
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true
}

/// UTF-8 helpers shared by the tokenizers.
enum UTF8Decoding {
    static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// Length of the well-formed UTF-8 character at `p` (at most `n` bytes), or 0 when malformed.
    @inline(__always)
    static func validLength(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let b0 = p[0]
        if b0 < 0x80 { return 1 }
        @inline(__always) func cont(_ k: Int) -> Bool { k < n && p[k] & 0xC0 == 0x80 }
        if b0 >= 0xC2 && b0 <= 0xDF { return cont(1) ? 2 : 0 }
        if b0 >= 0xE0 && b0 <= 0xEF {
            guard n >= 3, cont(1), cont(2) else { return 0 }
            if b0 == 0xE0 && p[1] < 0xA0 { return 0 }
            if b0 == 0xED && p[1] >= 0xA0 { return 0 }  // surrogates
            return 3
        }
        if b0 >= 0xF0 && b0 <= 0xF4 {
            guard n >= 4, cont(1), cont(2), cont(3) else { return 0 }
            if b0 == 0xF0 && p[1] < 0x90 { return 0 }
            if b0 == 0xF4 && p[1] >= 0x90 { return 0 }
            return 4
        }
        return 0
    }

    /// Byte length of the character starting with lead byte `b` in valid UTF-8.
    @inline(__always)
    static func length(lead b: UInt8) -> Int {
        b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
    }

    /// Decodes the scalar at `p` in valid UTF-8; returns it and its length.
    @inline(__always)
    static func scalar(_ p: UnsafePointer<UInt8>) -> (UInt32, Int) {
        let b0 = UInt32(p[0])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(p[1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(p[1] & 0x3F) << 6 | UInt32(p[2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(p[1] & 0x3F) << 12 | UInt32(p[2] & 0x3F) << 6 | UInt32(p[3] & 0x3F), 4)
    }

    /// Appends scalar `c` as UTF-8.
    @inline(__always)
    static func append(_ c: UInt32, to out: inout [UInt8]) {
        if c < 0x80 {
            out.append(UInt8(c))
        } else if c < 0x800 {
            out.append(UInt8(0xC0 | c >> 6)); out.append(UInt8(0x80 | c & 0x3F))
        } else if c < 0x10000 {
            out.append(UInt8(0xE0 | c >> 12)); out.append(UInt8(0x80 | (c >> 6) & 0x3F))
            out.append(UInt8(0x80 | c & 0x3F))
        } else {
            out.append(UInt8(0xF0 | c >> 18)); out.append(UInt8(0x80 | (c >> 12) & 0x3F))
            out.append(UInt8(0x80 | (c >> 6) & 0x3F)); out.append(UInt8(0x80 | c & 0x3F))
        }
    }
}
