// JSONParser: a strict, order-keeping JSON reader (safetensors headers, data elements), with byte offsets.

/// Recursive-descent JSON (RFC 8259) over bytes the caller has checked are UTF-8.
///
/// Nesting is capped (`maxDepth`) so a hostile header of a million `[` cannot overflow the stack.
public struct JSONParser {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let message: String
        /// Byte offset into the parsed text.
        public let offset: Int
        public var description: String { "\(message) at byte \(offset)" }
    }

    public static let maxDepth = 64
    public let bytes: UnsafeRawBufferPointer
    /// The next byte to read.
    public var pos = 0
    /// Read `NaN`, `Infinity` and `-Infinity` as numbers, as Python's `json.load` does by
    /// default (data files Python wrote); strict JSON (descriptors, headers) refuses them.
    public var pythonLiterals = false

    public init(bytes: UnsafeRawBufferPointer, pos: Int = 0) {
        self.bytes = bytes
        self.pos = pos
    }

    /// One value, surrounded by optional whitespace, and nothing else.
    public mutating func parseDocument() throws -> JSONNode {
        let v = try parseValue(depth: 0)
        skipSpace()
        if pos < bytes.count { throw fail("unexpected \(describe(bytes[pos])) after the value") }
        return v
    }

    func fail(_ message: String) -> Failure { Failure(message: message, offset: pos) }

    func describe(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
    }

    mutating func skipSpace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: String, _ value: JSONNode) throws -> JSONNode {
        for b in literal.utf8 {
            guard pos < bytes.count, bytes[pos] == b else { throw fail("invalid literal, expected \(literal)") }
            pos += 1
        }
        return value
    }

    /// One value starting at `pos` (after optional whitespace); leaves `pos` just after it.
    public mutating func parseValue(depth: Int = 0) throws -> JSONNode {
        guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
        skipSpace()
        guard pos < bytes.count else { throw fail("unexpected end of text") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            if let word = nonFinite() { return try literal(word) }
            return try parseNumber()
        case let b:
            if let word = nonFinite() { return try literal(word) }
            throw fail("unexpected \(describe(b))")
        }
    }

    /// `NaN`, `Infinity` or `-Infinity` at `pos`: what Python's `json.dump` writes for a
    /// non-finite float, which strict JSON (and so fidq) does not read.
    func nonFinite() -> String? {
        for word in ["NaN", "Infinity", "-Infinity"] where bytes.count - pos >= word.utf8.count {
            if word.utf8.enumerated().allSatisfy({ bytes[pos + $0.offset] == $0.element }) { return word }
        }
        return nil
    }

    /// `word` (`NaN`, `Infinity`, `-Infinity`) at `pos` as a number when `pythonLiterals`, else refused.
    private mutating func literal(_ word: String) throws -> JSONNode {
        guard pythonLiterals else { throw fail(Self.nonFiniteMessage(word)) }
        pos += word.utf8.count
        return .number(word)
    }

    static func nonFiniteMessage(_ word: String) -> String {
        "found \(word), which is not JSON (Python's json.dump writes it for a non-finite float: "
            + "the value was \(word == "NaN" ? "NaN" : "infinite") where the file was written)"
    }

    private mutating func parseObject(depth: Int) throws -> JSONNode {
        pos += 1  // {
        var pairs: [(String, JSONNode)] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object(pairs)
        }
        while true {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(key)\"") }
            pos += 1
            pairs.append((key, try parseValue(depth: depth + 1)))
            skipSpace()
            guard pos < bytes.count else { throw fail("unexpected end of text in an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
            throw fail("expected ',' or '}' in an object, found \(describe(bytes[pos]))")
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONNode {
        pos += 1  // [
        var items: [JSONNode] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            items.append(try parseValue(depth: depth + 1))
            skipSpace()
            guard pos < bytes.count else { throw fail("unexpected end of text in an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw fail("expected ',' or ']' in an array, found \(describe(bytes[pos]))")
        }
    }

    private mutating func parseNumber() throws -> JSONNode {
        let start = pos
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        func digits() -> Int {
            let s = pos
            while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39 { pos += 1 }
            return pos - s
        }
        let intStart = pos
        let intDigits = digits()
        guard intDigits > 0 else { throw fail("a number needs digits") }
        if intDigits > 1, bytes[intStart] == 0x30 { throw fail("a number cannot start with 0") }
        let negative = bytes[start] == UInt8(ascii: "-")
        var isInteger = true  // no fraction, no exponent: a Python int
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard digits() > 0 else { throw fail("a fraction needs digits") }
            isInteger = false
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard digits() > 0 else { throw fail("an exponent needs digits") }
            isInteger = false
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        if isInteger, !negative, let n = Int(text) { return .integer(n) }
        // Other integers stay as written (a Python int; `-0` is 0); anything else is a Python
        // float, kept as Python writes it back (`1.10` → `1.1`, `1e5` → `100000.0`, `1E400` → `Infinity`).
        if isInteger { return .number(text == "-0" ? "0" : text) }
        return .number(PythonFloat.canonical(text))
    }

    /// Refuses a string whose bytes decoding repaired (not UTF-8: Python's json stops on them),
    /// naming the first bad byte's offset.
    /// `start`: the offset of `raw`'s first byte when it is the file's own bytes (no escapes).
    func checkUTF8(_ text: String, _ raw: UnsafeRawBufferPointer, start: Int? = nil) throws {
        guard !decodedUnchanged(text, raw) else { return }
        guard let start else { throw fail("bytes that are not UTF-8 in a string") }
        // The first byte where the decoded text and the bytes part: the bad one.
        var k = 0
        for (a, b) in zip(text.utf8, raw) {
            if a != b { break }
            k += 1
        }
        throw Failure(message: "bytes that are not UTF-8 in a string", offset: start + k)
    }

    mutating func parseString() throws -> String {
        pos += 1  // opening quote
        // Fast path: no escape before the closing quote, so the bytes are the string.
        let end = plainEnd(from: pos)
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            let raw = UnsafeRawBufferPointer(rebasing: bytes[pos..<end])
            let text = String(decoding: raw, as: UTF8.self)
            try checkUTF8(text, raw, start: pos)
            pos = end + 1
            return text
        }
        // Slow path: runs of plain bytes are copied whole, each escape decoded in place.
        var out: [UInt8] = []
        out.reserveCapacity(end - pos + 16)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]))
        pos = end
        while true {
            let run = plainEnd(from: pos)
            if run > pos {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[pos..<run]))
                pos = run
            }
            guard pos < bytes.count else { throw fail("unterminated string") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let text = String(decoding: out, as: UTF8.self)
                try out.withUnsafeBytes { try checkUTF8(text, $0) }
                pos += 1
                return text
            }
            if b < 0x20 { throw fail("control character \(describe(b)) in a string") }
            pos += 1  // backslash
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), 92, UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by \u and a low one.
                    guard pos + 1 < bytes.count, bytes[pos] == 92, bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                    }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard Unicode.Scalar(scalar) != nil else { throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))") }
                Self.appendUTF8(scalar, to: &out)
            default: throw fail("invalid escape \\\(describe(e))")
            }
        }
    }

    /// Appends the UTF-8 bytes of a valid scalar (no surrogate) without building a String.
    static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case ..<0x80:
            out.append(UInt8(scalar))
        case ..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case ..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Moves past the string starting at `pos` (its opening quote) without building it.
    mutating func skipString() throws {
        pos += 1
        while true {
            pos = plainEnd(from: pos)
            guard pos < bytes.count else { throw fail("unterminated string") }
            switch bytes[pos] {
            case UInt8(ascii: "\""):
                pos += 1
                return
            case 92: pos += 2  // an escape: its next byte cannot end the string
            default: pos += 1  // a control byte: parseString names it, skipping passes over it
            }
        }
    }

    /// The first index from `start` holding `"`, `\` or a control byte (< 0x20); `bytes.count`
    /// (or `start` when past it) if none. Eight bytes at a time: strings are most of a data file.
    @inline(__always)
    func plainEnd(from start: Int) -> Int {
        var i = start
        let n = bytes.count
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            while i + 8 <= n {
                let x = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let quote = x ^ (0x22 &* ones), backslash = x ^ (0x5C &* ones)
                // A byte's high bit is set for a zero byte of quote/backslash or a byte below 0x20
                // (no false negatives; a chunk with any hit goes to the byte loop below).
                let hits = ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash | (x &- 0x20 &* ones) & ~x) & highs
                if hits != 0 { break }
                i += 8
            }
        }
        while i < n, bytes[i] != UInt8(ascii: "\""), bytes[i] != 92, bytes[i] >= 0x20 { i += 1 }
        return i
    }

    private mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("\\u needs 4 hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("\\u needs 4 hex digits")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}
