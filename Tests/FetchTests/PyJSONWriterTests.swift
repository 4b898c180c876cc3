// PyJSONWriterTests: the writer's layout and escaping against json.dumps(…, indent=4) outputs.
import Foundation
import Testing

@testable import Fetch

@Suite struct PyJSONWriterTests {
    static func write(_ values: [PyJSON]) throws -> String {
        let box = try Sandbox()
        let url = box.ws.appendingPathComponent("x.json")
        let w = try PyJSONWriter(url)
        for v in values { try w.append(v) }
        try w.finish()
        return try String(contentsOf: url, encoding: .utf8)
    }

    @Test func layoutMatchesPython() throws {
        // python3 -c 'import json; print(json.dumps([], indent=4))' and the like.
        #expect(try Self.write([]) == "[]")
        #expect(try Self.write([.object([("a", .list([])), ("b", .object([])), ("c", .int(-3))])])
            == "[\n    {\n        \"a\": [],\n        \"b\": {},\n        \"c\": -3\n    }\n]")
        #expect(try Self.write([.string("x"), .list([.string("y"), .int(1)])])
            == "[\n    \"x\",\n    [\n        \"y\",\n        1\n    ]\n]")
    }

    @Test func escapingMatchesEnsureASCII() {
        // json.dumps("q\"\\/\n\r\t\b\f\u{1}\u{7f}é😀") in CPython 3.11.
        var out: [UInt8] = []
        PyJSONWriter.appendString("q\"\\/\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #""q\"\\/\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00""#)
    }
}
