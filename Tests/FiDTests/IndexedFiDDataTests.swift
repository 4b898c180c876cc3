// IndexedFiDDataTests: the training data index returns the examples `load()` returns, for JSON
// lists and JSON Lines, sharded as FiD shards, with the same errors; and it holds a byte range
// per example, never the example.
import Formats
import Foundation
import Testing
@testable import FiD

@Suite struct IndexedFiDDataTests {
    func file(_ text: String, _ name: String) throws -> String {
        let p = TestData.scratch("indexed") + "/" + name
        try TestData.write(text, to: p)
        return p
    }

    /// `n` examples, some with scores, flags, targets, unicode and escapes (each element unlike the next).
    static func examples(_ n: Int) -> [String] {
        (0..<n).map { k in
            let ctxs = (0..<(k % 3 + 1)).map { j in
                #"{"title": "T\#(k).\#(j) \"q\"", "text": "p\#(k) é\n\#(j)", "score": \#(Double(k * 3 + j) / 4), "hasanswer": \#(j == 0)}"#
            }.joined(separator: ", ")
            let target = k % 2 == 0 ? #", "target": "t\#(k)""# : ""
            return #"{"id": "q\#(k)", "question": "who \#(k)? [x]", "answers": ["a\#(k)", "b"]\#(target), "ctxs": [\#(ctxs)]}"#
        }
    }

    func expectSame(_ a: [FiDExample], _ b: [FiDExample]) {
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) {
            #expect(x.index == y.index && x.idText == y.idText && x.question == y.question && x.target == y.target && x.answers == y.answers)
            #expect(x.ctxs.map(\.title) == y.ctxs.map(\.title) && x.ctxs.map(\.text) == y.ctxs.map(\.text))
            #expect(x.ctxs.map(\.score) == y.ctxs.map(\.score) && x.ctxs.map { $0.raw["hasanswer"] } == y.ctxs.map { $0.raw["hasanswer"] })
        }
    }

    @Test(arguments: [true, false]) func matchesLoadForListsAndLines(checked: Bool) throws {
        let ex = Self.examples(11)
        let list = try file("[\n  " + ex.joined(separator: ",\n  ") + "\n]\n", "d.json")
        let lines = try file("\n" + ex.joined(separator: "\n\n") + "\r\n", "d.jsonl")
        for path in [list, lines] {
            var seen: [Int] = []
            let check: ((FiDExample) throws -> Void)? = checked ? { seen.append($0.index) } : nil
            let indexed = try FiDData(path: path).index(check: check)
            let loaded = try FiDData(path: path).load()
            #expect(indexed.count == 11 && seen == (checked ? Array(0..<11) : []))
            expectSame(try (0..<indexed.count).map { try indexed.example(at: $0) }, loaded)
            // Out of order, as a shuffled batch reads them.
            expectSame(try [7, 2, 9].map { try indexed.example(at: $0) }, [7, 2, 9].map { loaded[$0] })
            for s in 0..<3 {
                let shard = try FiDData(path: path).index(shard: s, of: 3, check: check)
                expectSame(try (0..<shard.count).map { try shard.example(at: $0) }, try FiDData(path: path).load(shard: s, of: 3))
            }
        }
    }

    @Test func errorsNameFileAndElement() throws {
        func failure(_ body: () throws -> Void) -> FormatError? {
            do { try body(); return nil } catch { return error as? FormatError }
        }
        // Without `question`: found by the checked scan, or when parsed, naming the index either way.
        let p = try file(#"[{"question": "a", "ctxs": []}, {"answers": ["x"], "ctxs": []}]"#, "bad.json")
        var f = failure { _ = try FiDData(path: p).index { _ in } }
        #expect(f?.file == p && f?.location == "[1].question" && f?.message == "missing")
        let cheap = try FiDData(path: p).index()
        #expect(try cheap.example(at: 0).question == "a")
        f = failure { _ = try cheap.example(at: 1) }
        #expect(f?.file == p && f?.location == "[1].question" && f?.message == "missing")
        let l = try file("{\"question\": \"a\"}\n{\"question\": 3}\n{\"question\": \n", "bad.jsonl")
        f = failure { _ = try FiDData(path: l).index().example(at: 1) }
        #expect(f?.location == "line 2.question" && f?.message.contains("expected a string, found the integer 3") == true)
        f = failure { _ = try FiDData(path: l).index().example(at: 2) }
        #expect(f?.file == l && f?.location == "line 3")
        #expect(failure { _ = try FiDData(path: l).index { _ in } }?.location == "line 2.question")
        #expect(failure { _ = try FiDData(path: try file("  \n", "blank.jsonl")).index() }?.message == "the file is empty")
        #expect(failure { _ = try FiDData(path: try file("[]", "none.json")).index() }?.message == "holds no examples")
        #expect(failure { _ = try FiDData(path: try file("[{\"question\": \"a\"}", "cut.json")).index() } != nil)
    }

    /// The index costs a fixed few words per example however large the examples are: a file of
    /// 64 examples of ~40 KB each (100 passages) is indexed in under 4 KB.
    @Test func holdsByteRangesNotExamples() throws {
        let passage = String(repeating: "lorem ipsum ", count: 30)
        let ctxs = (0..<100).map { #"{"title": "t\#($0)", "text": "\#(passage)", "score": \#($0)}"# }.joined(separator: ", ")
        let ex = (0..<64).map { #"{"question": "q\#($0)", "answers": ["a"], "ctxs": [\#(ctxs)]}"# }
        let path = try file("[" + ex.joined(separator: ",") + "]", "big.json")
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        #expect(size > 64 * 30_000)
        for indexed in [try FiDData(path: path).index(), try FiDData(path: path).index { _ in }] {
            #expect(indexed.count == 64)
            #expect(IndexedFiDData.bytesPerExample <= 64, "\(IndexedFiDData.bytesPerExample)")
            #expect(indexed.indexBytes <= 2 * 64 * IndexedFiDData.bytesPerExample && indexed.indexBytes * 500 < size,
                    "index \(indexed.indexBytes) bytes for a \(size)-byte file")
            #expect(try indexed.example(at: 63).ctxs.count == 100 && indexed.example(at: 5).question == "q5")
        }
    }
}
