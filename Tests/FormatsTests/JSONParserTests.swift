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

    @Test func numbers() throws {
        #expect(try parse("[0,12,9223372036854775807]") == .array([.integer(0), .integer(12), .integer(.max)]))
        #expect(try parse("[-1,1.5,2e3,9223372036854775808]")
            == .array([.number("-1"), .number("1.5"), .number("2e3"), .number("9223372036854775808")]))
        #expect(failure("01")?.message == "a number cannot start with 0")
        #expect(failure("1.")?.message == "a fraction needs digits")
        #expect(failure("-")?.message == "a number needs digits")
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
    }
}
