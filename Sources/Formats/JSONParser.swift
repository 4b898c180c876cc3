// JSONParser: a strict, order-keeping JSON reader (safetensors headers, data elements), with byte offsets.

/// Recursive-descent JSON (RFC 8259) over bytes the caller has checked are UTF-8.
///
/// Nesting is capped (`maxDepth`) so a hostile header of a million `[` cannot overflow the stack.
public struct JSONParser {
    public struct Failure: Error, Equatable {
        public let message: String
        /// Byte offset into the parsed text.
        public let offset: Int
    }

    public static let maxDepth = 64
    public let bytes: UnsafeRawBufferPointer
    /// The next byte to read.
    public var pos = 0

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
            if let word = nonFinite() { throw fail(Self.nonFiniteMessage(word)) }
            return try parseNumber()
        case let b:
            if let word = nonFinite() { throw fail(Self.nonFiniteMessage(word)) }
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
        var isInteger = bytes[start] != UInt8(ascii: "-")
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
        if isInteger, let n = Int(text) { return .integer(n) }
        return .number(text)
    }

    mutating func parseString() throws -> String {
        pos += 1  // opening quote
        // Fast path: no escape before the closing quote, so the bytes are the string.
        var end = pos
        while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != 92, bytes[end] >= 0x20 { end += 1 }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            defer { pos = end + 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self)
        }
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[pos..<end]))
        pos = end
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b < 0x20 { throw fail("control character \(describe(b)) in a string") }
            if b != 92 {
                out.append(b)
                pos += 1
                continue
            }
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
                guard let u = Unicode.Scalar(scalar) else { throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))") }
                out += Array(String(Character(u)).utf8)
            default: throw fail("invalid escape \\\(describe(e))")
            }
        }
    }

    /// Moves past the string starting at `pos` (its opening quote) without building it.
    mutating func skipString() throws {
        pos += 1
        while pos < bytes.count {
            switch bytes[pos] {
            case UInt8(ascii: "\""):
                pos += 1
                return
            case 92: pos += 2  // an escape: its next byte cannot end the string
            default: pos += 1
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("\\u needs 4 hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let d = UInt32(String(Character(Unicode.Scalar(bytes[pos]))), radix: 16) else {
                throw fail("\\u needs 4 hex digits")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}
