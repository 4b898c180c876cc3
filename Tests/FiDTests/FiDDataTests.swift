// FiDDataTests: FiD's data files read as JSON lists and JSON Lines, sharded as FiD shards, with
// errors naming the file, the element and the field; and the round trip of unknown fields.
import Formats
import Foundation
import Testing
@testable import FiD

@Suite struct FiDDataTests {
    static let list = """
        [
          {"id": "q0", "question": "who?", "answers": ["Ada"], "extra": {"k": [1, 2]},
           "ctxs": [{"title": "T0", "text": "p0", "score": "1.5", "hasanswer": true, "id": "7"},
                    {"title": "T1", "text": "p1", "score": 2.5}]},
          {"question": "what?", "target": "x", "answers": [], "ctxs": []},
          {"question": "where?", "answers": ["here"], "ctxs": [{"title": "", "text": "t"}]}
        ]
        """

    func file(_ text: String, _ name: String = "data.json") throws -> String {
        let p = TestData.scratch("data") + "/" + name
        try TestData.write(text, to: p)
        return p
    }

    func failure(_ body: () throws -> Void) -> FormatError? {
        do { try body(); return nil } catch { return error as? FormatError }
    }

    @Test func readsAListWithDefaultsAndScores() throws {
        let ex = try FiDData(path: try file(Self.list)).load()
        #expect(ex.map(\.idText) == ["q0", "1", "2"] && ex.map(\.index) == [0, 1, 2])
        #expect(ex[0].question == "who?" && ex[0].answers == ["Ada"] && ex[0].target == nil && ex[1].target == "x")
        #expect(ex[0].ctxs.map(\.score) == [1.5, 2.5] && ex[2].ctxs[0].score == nil && ex[1].ctxs.isEmpty)
        #expect(try FiDData(path: try file(Self.list)).count() == 3)
    }

    @Test func readsJSONLinesAndShardsAsFiD() throws {
        let lines = (0..<7).map { #"{"question": "q\#($0)", "answers": ["a"], "ctxs": []}"# }.joined(separator: "\n") + "\n\n"
        let path = try file(lines, "data.jsonl")
        #expect(try FiDData(path: path).count() == 7)
        // Lines ended by a lone CR (or CRLF) as Python's universal newlines end them: counted,
        // loaded and indexed alike.
        let cr = try file(lines.replacingOccurrences(of: "\n", with: "\r"), "cr.jsonl")
        let crlf = try file(lines.replacingOccurrences(of: "\n", with: "\r\n"), "crlf.jsonl")
        for p in [cr, crlf] {
            let n = try FiDData(path: p).count(), questions = try FiDData(path: p).load().map(\.question)
            #expect(n == 7 && questions == (0..<7).map { "q\($0)" })
            let indexed = try FiDData(path: p).index(), last = try indexed.example(at: 6).question
            #expect(indexed.count == 7 && last == "q6")
        }
        // load_data: example k belongs to rank k % world_size.
        #expect(try FiDData(path: path).load(shard: 1, of: 3).map(\.index) == [1, 4])
        #expect(try FiDData(path: path).load(shard: 0, of: 3).map(\.question) == ["q0", "q3", "q6"])
        var total = 0
        for s in 0..<3 { total += try FiDData(path: path).load(shard: s, of: 3).count }
        #expect(total == 7)
    }

    @Test func badDataNamesFileElementAndField() throws {
        var p = try file(#"[{"question": "a", "ctxs": []}, {"answers": ["x"], "ctxs": []}]"#)
        var f = failure { _ = try FiDData(path: p).load() }
        #expect(f?.file == p && f?.location == "[1].question" && f?.message == "missing")
        p = try file("{\"question\": \"a\"}\n{\"question\": 3}\n", "d.jsonl")
        f = failure { _ = try FiDData(path: p).load() }
        #expect(f?.location == "line 2.question" && f?.message.contains("expected a string, found the integer 3") == true)
        p = try file(#"[{"question": "a", "ctxs": [{"title": "t"}]}]"#)
        #expect(failure { _ = try FiDData(path: p).load() }?.location == "[0].ctxs[0].text")
        p = try file(#"[{"question": "a", "ctxs": [{"title": "t", "text": "x", "score": "high"}]}]"#)
        #expect(failure { _ = try FiDData(path: p).load() }?.location == "[0].ctxs[0].score")
        p = try file(#"[1]"#)
        #expect(failure { _ = try FiDData(path: p).load() }?.message.contains("expected an example object") == true)
        // A key twice in a passage (Python's json keeps the last, a lookup the first): refused.
        p = try file(#"[{"question": "a", "ctxs": [{"title": "t", "text": "x", "score": 1, "score": -1}]}]"#)
        let twice = failure { _ = try FiDData(path: p).load() }
        #expect(twice?.location == "[0].ctxs[0].score" && twice?.message == "appears twice", "\(String(describing: twice))")
        // A file that is no FiD data says what it starts with; UTF-16 is named, with the fix.
        p = try file("hello")
        #expect(failure { _ = try FiDData(path: p).load() }?.message.hasSuffix("found 'h'") == true)
        let utf16 = TestData.scratch("data") + "/utf16.json"
        try (Data([0xFF, 0xFE]) + "[{}]".data(using: .utf16LittleEndian)!).write(to: URL(fileURLWithPath: utf16))
        for load in [{ _ = try FiDData(path: utf16).load() }, { _ = try FiDData(path: utf16).index() }] as [() throws -> Void] {
            let e = failure(load)
            #expect(e?.message.hasSuffix("found a UTF-16 byte-order mark") == true && e?.hint?.contains("save it as UTF-8") == true,
                    "\(String(describing: e))")
        }
        // Keys differing only in how "é" is written are two keys, as Python reads them.
        p = try file("[{\"question\": \"a\", \"caf\u{E9}\": 1, \"cafe\u{301}\": 2, \"ctxs\": [{\"title\": \"t\", \"text\": \"x\", \"k\u{E9}\": 1, \"ke\u{301}\": 2}]}]")
        #expect(try FiDData(path: p).load().count == 1)
        // A passage without a title (FiD's KeyError) says how to write one that has none.
        p = try file(#"[{"question": "a", "ctxs": [{"text": "t"}]}]"#)
        let untitled = failure { _ = try FiDData(path: p).load() }
        #expect(untitled?.location == "[0].ctxs[0].title" && untitled?.message == "missing"
                && untitled?.hint?.contains(#"use "" for a passage without a title"#) == true, "\(String(describing: untitled))")
        p = try file("[]")
        #expect(failure { _ = try FiDData(path: p).load() }?.message == "holds no examples")
        p = try file("  ")
        #expect(failure { _ = try FiDData(path: p).load() }?.message == "the file is empty")
        p = try file("\"text\"")
        #expect(failure { _ = try FiDData(path: p).load() }?.location == "byte 0")
        p = try file(#"[{"question": "a"}, {"question": "b" "x"}]"#)
        #expect(failure { _ = try FiDData(path: p).load() }?.location.hasPrefix("[1], byte 37") == true)
        // A pretty-printed object (a summary, a config) is named as such, not as a bad first line,
        // whether read in order or indexed.
        p = try file("{\n  \"train\": 850,\n  \"dev\": 150\n}\n")
        for f in [failure { _ = try FiDData(path: p).load() }, failure { _ = try FiDData(path: p).index().example(at: 0) }] {
            #expect(f?.message == "is one JSON object (keys 'train', 'dev'), not a list of records", "\(String(describing: f))")
        }
        // A UTF-8 byte order mark before the list or the lines is skipped.
        for text in ["\u{FEFF}[{\"question\": \"a\"}]", "\u{FEFF}{\"question\": \"a\"}\n"] {
            #expect(try FiDData(path: try file(text)).load().map(\.question) == ["a"], "\(text)")
            #expect(try FiDData(path: try file(text)).index().example(at: 0).question == "a", "\(text)")
        }
        // A broken first line of real JSON Lines still names the line and column.
        p = try file("{\"question\": }\n{\"question\": \"b\"}\n")
        #expect(failure { _ = try FiDData(path: p).load() }?.location == "line 1")
    }

    @Test func writesBackUnknownFieldsWithNewScores() throws {
        let ex = try FiDData(path: try file(Self.list)).load()
        let out = PyJSON.compact(ex[0].json(passages: FiDFormat.ordered(ex[0].ctxs), scores: [0.25]))
        #expect(out == #"{"id": "q0", "question": "who?", "answers": ["Ada"], "extra": {"k": [1, 2]}, "ctxs": [{"title": "T1", "text": "p1", "score": 0.25}, {"title": "T0", "text": "p0", "score": "1.5", "hasanswer": true, "id": "7"}]}"#)
        // An example without id gets FiD's load_data id (its index), appended.
        #expect(PyJSON.compact(ex[1].json(passages: [])) == #"{"question": "what?", "target": "x", "answers": [], "ctxs": [], "id": 1}"#)
    }
}
