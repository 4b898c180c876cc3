// PyJSONWriterTests: the writer's layouts and escaping against Python's json.dumps outputs, and float repr.
import Foundation
import Testing

@testable import Formats

@Suite struct PyJSONWriterTests {
    static func write(_ values: [JSONNode], layout: PyJSONWriter.Layout = .indentedList) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pyjson-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.json").path
        let w = try PyJSONWriter(path: path, layout: layout)
        for v in values { try w.append(v) }
        #expect(!FileManager.default.fileExists(atPath: path))  // only the temporary name until finish
        try w.finish()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["x.json"])
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    /// Two writers of one path at once (a job attempt that lost its claim while writing, and the
    /// attempt that took over), in either order of creation and of finishing: each writes its own
    /// file and renames it whole, so the output is always one writer's whole file, never one file
    /// truncated under the other (it was: NUL bytes renamed into place), and neither fails.
    @Test(arguments: [false, true]) func twoWritersOfAPathNeverShare(newerFinishesFirst: Bool) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pyjson-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/rt.json"
        let old = try PyJSONWriter(path: path)
        for k in 0..<2000 { try old.append(.integer(k)) }  // past one flush
        let new = try PyJSONWriter(path: path)
        for k in 0..<3 { try new.append(.integer(k)) }
        let (first, second) = newerFinishesFirst ? (new, old) : (old, new)
        try first.finish()
        try second.finish()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let whole = [old === second ? 2000 : 3].map { n in "[\n" + (0..<n).map { "    \($0)" }.joined(separator: ",\n") + "\n]" }[0]
        #expect(text == whole, "\(text.prefix(60))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["rt.json"])
    }

    /// Staging files: an unfinished writer removes its own; a new writer removes those killed
    /// writers left (idle for an hour), of its own path only (`rt`'s leaves `rt.json`'s), and
    /// never a live writer's.
    @Test func stagingFilesDoNotOutliveTheirWriter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pyjson-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let w = try PyJSONWriter(path: dir + "/a.json")
            try w.append(.integer(1))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).count == 1)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "an unfinished writer's file stays")
        let killed = [".rt.tmp", ".rt.123-456.tmp", ".rt.json.7-8.tmp", ".rt.x.tmp", "rt.json"]
        let hourAgo = Date().addingTimeInterval(-2 * StaleFiles.idleAfter)
        for name in killed {
            FileManager.default.createFile(atPath: dir + "/" + name, contents: Data("x".utf8))
            try FileManager.default.setAttributes([.modificationDate: hourAgo], ofItemAtPath: dir + "/" + name)
        }
        FileManager.default.createFile(atPath: dir + "/.rt.99-1.tmp", contents: Data("live".utf8))
        let w = try PyJSONWriter(path: dir + "/rt")
        try w.finish()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == [".rt.99-1.tmp", ".rt.json.7-8.tmp", ".rt.x.tmp", "rt", "rt.json"])
    }

    @Test func layoutMatchesPython() throws {
        // python3 -c 'import json; print(json.dumps([], indent=4))' and the like.
        #expect(try Self.write([]) == "[]")
        #expect(try Self.write([.object([("a", .array([])), ("b", .object([])), ("c", .number("-3"))])])
            == "[\n    {\n        \"a\": [],\n        \"b\": {},\n        \"c\": -3\n    }\n]")
        #expect(try Self.write([.string("x"), .array([.string("y"), .integer(1), .bool(true), .null])])
            == "[\n    \"x\",\n    [\n        \"y\",\n        1,\n        true,\n        null\n    ]\n]")
    }

    @Test func compactAndJSONLinesMatchPython() throws {
        // json.dumps({"id": 3, "a": [1.5, "x"], "b": {}, "c": []}) == '{"id": 3, "a": [1.5, "x"], "b": {}, "c": []}'
        let v: JSONNode = .object([("id", .integer(3)), ("a", .array([.double(1.5), .string("x")])), ("b", .object([])), ("c", .array([]))])
        #expect(PyJSON.compact(v) == #"{"id": 3, "a": [1.5, "x"], "b": {}, "c": []}"#)
        #expect(try Self.write([v, .integer(2)], layout: .jsonLines) == PyJSON.compact(v) + "\n2\n")
        #expect(try Self.write([], layout: .jsonLines) == "")
    }

    /// A value read from a data file is written back as Python's json writes what it reads:
    /// numbers as Python floats (the input's spelling was kept: `1.10`, `1e5`), a repeated key
    /// once (first place, last value; both pairs were written).
    @Test func numbersAndRepeatedKeysAsPythonReadsThem() throws {
        let input = #"{"a": 1, "a": 2, "b": [1.10, 1e5, -0, 1E400, 1e-7, 12345678901234567890.0, 1e16, NaN, -Infinity, 0.30000000000000004, "#
            + #"123456789012345678901234, 1e-400, -0.0, 2.50, 0.1000000000000000055511151231257827]}"#
        // print(json.dumps(json.loads(input))) in CPython 3.11:
        let python = #"{"a": 2, "b": [1.1, 100000.0, 0, Infinity, 1e-07, 1.2345678901234567e+19, 1e+16, NaN, -Infinity, 0.30000000000000004, "#
            + #"123456789012345678901234, 0.0, -0.0, 2.5, 0.1]}"#
        let bytes = Array(input.utf8)
        let value = try bytes.withUnsafeBytes { raw -> JSONNode in
            var p = JSONParser(bytes: raw)
            p.pythonLiterals = true
            return try p.parseDocument()
        }
        #expect(PyJSON.compact(value) == python)
        // json.dumps(json.loads(input), indent=4) keeps the same dict.
        #expect(PyJSON.indented(value).hasPrefix("{\n    \"a\": 2,\n    \"b\": [\n        1.1,\n"), "\(PyJSON.indented(value))")
    }

    /// Keys that differ only in how "é" is written are two keys, as in Python (one was lost).
    @Test func keysDifferingInCompositionAreTwoKeys() {
        let value = JSONNode.object([("caf\u{E9}", .integer(1)), ("cafe\u{301}", .integer(2)), ("caf\u{E9}", .integer(3))])
        // print(json.dumps(json.loads('{"caf\u00e9": 1, "cafe\u0301": 2, "caf\u00e9": 3}'))):
        #expect(PyJSON.compact(value) == #"{"caf\u00e9": 3, "cafe\u0301": 2}"#)
    }

    @Test func escapingMatchesEnsureASCII() {
        // json.dumps("q\"\\/\n\r\t\b\f\u{1}\u{7f}é😀") in CPython 3.11.
        var out: [UInt8] = []
        PyJSON.appendString("q\"\\/\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #""q\"\\/\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00""#)
    }

    @Test func floatReprMatchesPython() {
        // [repr(x) for x in (…)] in CPython 3.11; Float32 values as torch's .item() widens them.
        let cases: [(Double, String)] = [
            (0.5, "0.5"), (1, "1.0"), (-3.25, "-3.25"), (1e-5, "1e-05"), (0.0001, "0.0001"), (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"), (1234567890123456.0, "1234567890123456.0"), (123.456, "123.456"), (0, "0.0"),
            (-0.0, "-0.0"), (Double(Float(0.1)), "0.10000000149011612"), (Double(Float(-12.345678)), "-12.345678329467773"),
            (2.5e-300, "2.5e-300"), (1.7976931348623157e308, "1.7976931348623157e+308"), (100, "100.0"),
        ]
        for (x, python) in cases { #expect(PythonFloat.repr(x) == python, "\(x)") }
    }
}
