// JSONStreamTests: array elements (top level or under a key) and JSON Lines, parsed one at a time, with located errors.
import Foundation
import Testing

@testable import Formats

@Suite struct JSONStreamTests {
    static func elements(_ json: String, key: String? = nil, parse: Bool = true) throws -> [(JSONElement, String)] {
        var out: [(JSONElement, String)] = []
        let bytes = Array(json.utf8)
        try bytes.withUnsafeBytes { raw in
            try JSONStream(bytes: raw, file: "t.json").forEachElement(ofArray: key, parse: parse) {
                out.append(($0, String(decoding: $0.bytes, as: UTF8.self)))
            }
        }
        return out
    }

    static func lines(_ text: String) throws -> [JSONElement] {
        var out: [JSONElement] = []
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { raw in try JSONStream(bytes: raw, file: "t.jsonl").forEachLine { out.append($0) } }
        return out
    }

    static func failure(_ body: () throws -> Void) -> FormatError? {
        do { try body(); return nil } catch { return error as? FormatError }
    }

    @Test func topLevelArray() throws {
        let got = try Self.elements("[\n {\"a\": [1, \"]\"]},\n 2 , \"s\\\"\" ]\n")
        #expect(got.map(\.1) == [#"{"a": [1, "]"]}"#, "2", #""s\"""#])
        #expect(got.map(\.0.value) == [.object([("a", .array([.integer(1), .string("]")]))]), .integer(2), .string("s\"")])
        #expect(got.map(\.0.index) == [0, 1, 2] && got.map(\.0.line) == [2, 3, 3] && got[0].0.offset == 3)
        #expect(try Self.elements(" [ ] ").isEmpty)
    }

    @Test func arrayUnderAKeyWhateverComesFirst() throws {
        let json = #" { "Domain": "Web", "x": [1, {"Data": "]"}], "n": 5, "Data" : [ {"a": "},\"]"}, [2, 3], "s\\", 4 , null ], "Split": "train"}"#
        #expect(try Self.elements(json, key: "Data").map(\.1) == [#"{"a": "},\"]"}"#, "[2, 3]", #""s\\""#, "4", "null"])
        #expect(try Self.elements(json, key: "Data", parse: false).map(\.1) == [#"{"a": "},\"]"}"#, "[2, 3]", #""s\\""#, "4", "null"])
        #expect(try Self.elements(json, key: "Data", parse: false).allSatisfy { $0.0.value == .null })
        #expect(try Self.elements(#"{"Data": []}"#, key: "Data").isEmpty)
        #expect(Self.failure { _ = try Self.elements(#"{"Other": [1]}"#, key: "Data") }?.message == "no key \"Data\" in the top-level object")
        #expect(Self.failure { _ = try Self.elements(#"{"Data": [{"a": 1}"#, key: "Data") } != nil)
        #expect(Self.failure { _ = try Self.elements("[1, 2]", key: "Data") }?.message.contains("expected a JSON object") == true)
    }

    @Test func arrayErrorsNameByteAndLine() {
        let f = Self.failure { _ = try Self.elements("[\n {\"a\": 1},\n {\"a\" 2}\n]") }
        // The element is named as field errors name it ([1]), then the byte and line.
        #expect(f?.file == "t.json" && f?.location == "[1], byte 19 (line 3)" && f?.message == "expected ':' after key \"a\"")
        // Structure-only scans (counting) name it too.
        #expect(Self.failure { _ = try Self.elements("[1, {\"a\": \"x]", parse: false) }?.location.hasPrefix("[1], byte") == true)
        #expect(Self.failure { _ = try Self.elements("[1, 2") }?.message.contains("unexpected end of file") == true)
        #expect(Self.failure { _ = try Self.elements("[1 2]") }?.message.contains("expected ',' or ']' after element 0") == true)
        #expect(Self.failure { _ = try Self.elements("[1] x") }?.message.contains("after the array") == true)
        #expect(Self.failure { _ = try Self.elements("{\"a\": 1}") }?.message.contains("expected a JSON array") == true)
        #expect(Self.failure { _ = try Self.elements("") }?.message.contains("found the end of the file") == true)
    }

    @Test func jsonLines() throws {
        let got = try Self.lines("{\"q\": \"a\"}\n\n  \n[1, 2]\r\n\"x\"")
        #expect(got.map(\.value) == [.object([("q", .string("a"))]), .array([.integer(1), .integer(2)]), .string("x")])
        #expect(got.map(\.index) == [0, 1, 2] && got.map(\.line) == [1, 4, 5])
        let f = Self.failure { _ = try Self.lines("{\"q\": 1}\n{\"q\": }\n") }
        #expect(f?.location == "line 2" && f?.message.contains("column 7") == true)
        // Lines end as Python's universal newlines end them (FiD reads `for line in file`): a lone
        // CR too (old Mac files read "unexpected '{' after the value"), CRLF once.
        let cr = try Self.lines("{\"q\": 1}\r{\"q\": 2}\r\n\r{\"q\": 3}")
        #expect(cr.map(\.value) == [1, 2, 3].map { .object([("q", .integer($0))]) } && cr.map(\.line) == [1, 2, 4], "\(cr.map(\.line))")
        // A CR between a line's tokens ends it there, as in Python, whose json.loads then refuses the part.
        #expect(Self.failure { _ = try Self.lines("{\"q\":\r 1}\n") } != nil)
    }

    @Test func mappedFileAndFirstByte() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("stream-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        // Big enough to be mapped rather than read (1 MiB threshold).
        let items = (0..<30_000).map { "{\"id\": \($0), \"text\": \"passage number \($0)\"}" }
        try ("  [" + items.joined(separator: ",\n") + "]").write(to: url, atomically: true, encoding: .utf8)
        let stream = try JSONStream(path: url.path)
        #expect(stream.firstByte == UInt8(ascii: "["))
        var n = 0
        try stream.forEachElement { e in
            #expect(e.value["id"] == .integer(e.index) && e.line == e.index + 1)
            n += 1
        }
        #expect(n == 30_000)
        #expect(Self.failure { _ = try JSONStream(path: url.path + ".missing") }?.message.contains("cannot open") == true)
    }
}
