// JSONParserTests: the strict JSON reader — order and duplicates kept, escapes, numbers, errors.
import Testing
@testable import Formats

@Suite struct JSONParserTests {
    func parse(_ text: String) throws -> JSONNode {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw in
            var p = JSONParser(bytes: raw)
            return try p.parseDocument()
        }
    }

    func failure(_ text: String) -> JSONParser.Failure? {
        do { _ = try parse(text); return nil } catch { return error as? JSONParser.Failure }
    }

    @Test func keepsOrderAndDuplicates() throws {
        #expect(try parse(#"{"b":1,"a":[true,false,null],"b":"x"}"#)
            == .object([("b", .integer(1)), ("a", .array([.bool(true), .bool(false), .null])), ("b", .string("x"))]))
        #expect(try parse(" { } ") == .object([]))
    }

    @Test func stringEscapes() throws {
        #expect(try parse(#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\té😀"))
        #expect(try parse("\"é raw\"") == .string("é raw"))
        #expect(failure(#""\ud83d""#)?.message.contains("unpaired surrogate") == true)
        #expect(failure("\"a\u{1}\"")?.message.contains("control character") == true)
        #expect(failure(#""\x""#)?.message.contains("invalid escape") == true)
        #expect(failure(#""abc"#)?.message == "unterminated string")
    }

    /// Random strings of every kind of scalar, each written raw, as a short escape or as `\uXXXX`
    /// (a surrogate pair above U+FFFF, hex digits in either case), read back exactly; lengths up to
    /// 160 bytes put escapes at every offset of the eight-byte scan.
    @Test func escapedStringsReadBackExactly() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0x00...0x1F, 0x80...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
        func hex(_ v: UInt32) -> String {
            let digits = String(v, radix: 16)
            let padded = String(repeating: "0", count: 4 - digits.count) + digits
            return next(2) == 0 ? padded : padded.uppercased()
        }
        for _ in 0..<300 {
            var expected = String.UnicodeScalarView()
            var json = "\""
            for _ in 0..<next(40) {
                let pool = pools[next(next(3) == 0 ? pools.count : 1)]
                let u = Unicode.Scalar(pool.lowerBound + UInt32(next(Int(pool.upperBound - pool.lowerBound) + 1)))!
                expected.append(u)
                let short: [Unicode.Scalar: String] = ["\"": "\\\"", "\\": "\\\\", "/": "\\/", "\u{8}": "\\b",
                                                        "\u{C}": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"]
                let mustEscape = u.value < 0x20 || u == "\"" || u == "\\"
                switch (mustEscape ? 1 + next(2) : next(3), short[u]) {
                case (0, _): json.unicodeScalars.append(u)
                case (1, let s?): json += s
                default:
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        json += "\\u" + hex(0xD800 + (v >> 10)) + "\\u" + hex(0xDC00 + (v & 0x3FF))
                    } else {
                        json += "\\u" + hex(u.value)
                    }
                }
            }
            json += "\""
            #expect(try parse(json) == .string(String(expected)), "\(json)")
            // Skipping (JSONStream's key search) ends where reading does: after the closing quote.
            let bytes = Array((json + " ,").utf8)
            let skippedTo = try bytes.withUnsafeBytes { raw in
                var p = JSONParser(bytes: raw)
                try p.skipString()
                return p.pos
            }
            #expect(skippedTo == bytes.count - 2, "\(json)")
        }
        // A raw control byte anywhere in a long string is refused, not scanned past.
        for c in 0..<0x20 {
            for offset in 0..<16 {
                let text = "\"" + String(repeating: "a", count: offset) + String(UnicodeScalar(UInt8(c))) + String(repeating: "b", count: 24) + "\""
                #expect(failure(text)?.message.contains("control character") == true, "byte \(c) at \(offset)")
            }
        }
        #expect(failure(#""\u00g1""#)?.message.contains("4 hex digits") == true)
        #expect(failure(#""\u12"#)?.message.contains("4 hex digits") == true)
    }

    @Test func numbers() throws {
        #expect(try parse("[0,12,9223372036854775807]") == .array([.integer(0), .integer(12), .integer(.max)]))
        #expect(try parse("[-1,1.5,2e3,9223372036854775808]")
            == .array([.number("-1"), .number("1.5"), .number("2000.0"), .number("9223372036854775808")]))
        // As Python's json reads them: -0 is the int 0; a float in Python's repr.
        #expect(try parse("[-0, -0.0, 1.50, 1E2]") == .array([.number("0"), .number("-0.0"), .number("1.5"), .number("100.0")]))
        #expect(failure("01")?.message == "a number cannot start with 0")
        #expect(failure("1.")?.message == "a fraction needs digits")
        #expect(failure("-")?.message == "a number needs digits")
    }

    /// Bytes that are not UTF-8 inside a string (a latin-1 file) are refused, naming the bad
    /// byte's offset where the string has no escape; decoding would have turned them into U+FFFD
    /// (an answer "caf\u{FFFD}" that never matches). A truncated four-byte sequence, whose
    /// repair is as long as itself, is caught too.
    @Test func bytesThatAreNotUTF8AreRefused() throws {
        func failure(_ bytes: [UInt8]) -> JSONParser.Failure? {
            do {
                _ = try bytes.withUnsafeBytes { raw in
                    var p = JSONParser(bytes: raw)
                    return try p.parseDocument()
                }
                return nil
            } catch { return error as? JSONParser.Failure }
        }
        let latin = Array(#"{"answers": ["caf"#.utf8) + [0xE9] + Array(#""]}"#.utf8)
        let f = failure(latin)
        #expect(f?.message == "bytes that are not UTF-8 in a string" && f?.offset == 17, "\(String(describing: f))")
        #expect(failure(Array(#"["a\n"#.utf8) + [0xFF] + Array(#""]"#.utf8))?.message == "bytes that are not UTF-8 in a string")
        #expect(failure(Array(#"[""#.utf8) + [0xF0, 0x90, 0x80] + Array(#"A"]"#.utf8))?.message == "bytes that are not UTF-8 in a string")
        #expect(try parse(#"["café \u00e9 😀"]"#) == .array([.string("café é 😀")]))
    }

    @Test func errorsCarryOffsets() {
        let f = failure(#"{"a":1 "b":2}"#)
        #expect(f?.offset == 7 && f?.message.contains("expected ',' or '}'") == true)
        #expect(failure("[1,2")?.message == "unexpected end of text in an array")
        #expect(failure("tru")?.message == "invalid literal, expected true")
        #expect(failure("{} x")?.message == "unexpected 'x' after the value")
        #expect(failure(String(repeating: "{\"a\":", count: 200))?.message == "nesting deeper than 64")
    }

    /// Python's json.dump writes NaN and ±Infinity for non-finite floats (a reader's scores gone
    /// NaN): named as such, where it said "unexpected 'N'".
    @Test func pythonsNonFiniteFloatsAreNamed() {
        for (text, word, offset) in [(#"{"score": NaN}"#, "NaN", 10), ("[1, Infinity]", "Infinity", 4), ("[-Infinity]", "-Infinity", 1)] {
            let f = failure(text)
            #expect(f?.offset == offset && f?.message.contains("found \(word), which is not JSON") == true, "\(text): \(String(describing: f))")
        }
        #expect(failure("[-Inf]")?.message.contains("not JSON") == false)
        #expect(failure("[Nope]")?.message == "unexpected 'N'")
        // Data files Python wrote are read as Python's json.load reads them (its default).
        let text = Array("[NaN, Infinity, -Infinity, 1]".utf8)
        let value = text.withUnsafeBytes { raw -> JSONNode? in
            var p = JSONParser(bytes: raw)
            p.pythonLiterals = true
            return try? p.parseDocument()
        }
        #expect(value == .array([.number("NaN"), .number("Infinity"), .number("-Infinity"), .integer(1)]))
        #expect(value.map(PyJSON.compact) == "[NaN, Infinity, -Infinity, 1]")
    }
}
