// BM25IndexTests: Lucene BM25 scores against a direct computation, ranking, save/load through the mapping.
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@testable import Retrieval

@Suite struct BM25IndexTests {
    static let passages = [
        Passage(id: "1", text: "The Eiffel Tower is a wrought-iron tower in Paris.", title: "Eiffel Tower"),
        Passage(id: "2", text: "Paris is the capital of France; Paris has 2 million people.", title: "Paris"),
        Passage(id: "3", text: "Berlin is the capital of Germany.", title: "Berlin"),
        Passage(id: "4", text: "Towers, towers everywhere: TOWER of London.", title: "Tower of London"),
        Passage(id: "5", text: "Nothing to see here.", title: ""),
    ]

    static func build() throws -> BM25Index {
        var it = passages.makeIterator()
        return try BM25Index.build(passages: { it.next() })
    }

    /// Lucene's BM25 written out directly from the passages.
    static func direct(_ query: String, k1: Double = 0.9, b: Double = 0.4) -> [Double] {
        let docs = passages.map { BM25Index.terms($0.title) + BM25Index.terms($0.text) }
        let avg = Double(docs.map(\.count).reduce(0, +)) / Double(docs.count)
        return docs.map { d in
            BM25Index.terms(query).reduce(0.0) { acc, t in
                let df = Double(docs.filter { $0.contains(t) }.count)
                guard df > 0 else { return acc }
                let tf = Double(d.filter { $0 == t }.count)
                let idf = Foundation.log(1 + (Double(docs.count) - df + 0.5) / (df + 0.5))
                return acc + idf * tf / (tf + k1 * (1 - b + b * Double(d.count) / avg))
            }
        }
    }

    @Test func tokenisation() {
        #expect(BM25Index.terms("Wrought-iron TOWER, Café 2018!") == ["wrought", "iron", "tower", "café", "2018"])
    }

    /// A word is one term however its letters are composed or cased: the index's vocabulary and
    /// the query meet on NFD and Python's lower-casing, whichever form the corpus used first.
    @Test func composedDecomposedAndFinalSigmaAreOneTerm() throws {
        let nfd = "Cafe\u{0301} culture", nfc = "Caf\u{00E9} au lait"
        for firstForm in [nfd, nfc] {
            let rows = [
                Passage(id: "0", text: firstForm, title: ""), Passage(id: "1", text: firstForm == nfd ? nfc : nfd, title: ""),
                Passage(id: "2", text: "\u{039F}\u{0394}\u{039F}\u{03A3} street", title: ""),
                Passage(id: "3", text: "\u{03BF}\u{03B4}\u{03BF}\u{03C2} avenue", title: ""),
                Passage(id: "4", text: "nothing here", title: ""),
            ]
            var it = rows.makeIterator()
            let index = try BM25Index.build(passages: { it.next() })
            for query in ["caf\u{00E9}", "cafe\u{0301}", "CAF\u{00C9}"] {
                #expect(Set(index.search([query], k: 5)[0].map(\.row)) == [0, 1], "\(query.unicodeScalars.map(\.value))")
            }
            for query in ["\u{03BF}\u{03B4}\u{03BF}\u{03C2}", "\u{039F}\u{0394}\u{039F}\u{03A3}"] {
                #expect(Set(index.search([query], k: 5)[0].map(\.row)) == [2, 3], "\(query)")
            }
        }
        #expect(BM25Index.terms("\u{039F}\u{0394}\u{039F}\u{03A3}") == ["\u{03BF}\u{03B4}\u{03BF}\u{03C2}"])
    }

    /// A version-1 index keeps accented terms composed, which today's NFD queries would miss
    /// without a word: it is refused with the hint to rebuild.
    @Test func aVersionOneIndexIsRefused() throws {
        let path = NSTemporaryDirectory() + "fidq-bm25-v1-\(UUID().uuidString).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.build().save(to: path)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.replaceSubrange(8..<12, with: [1, 0, 0, 0])
        try data.write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: RetrievalError.self) { try BM25Index(path: path) }
        #expect(e?.field == "version" && e?.hint?.contains("rebuild") == true, "\(String(describing: e))")
    }

    @Test func scoresEqualLuceneFormula() throws {
        let index = try Self.build()
        for query in ["capital of France", "tower tower paris", "London", "unknownword", "Paris"] {
            let want = Self.direct(query)
            let hits = index.search([query], k: 10)[0]
            let positive = want.enumerated().filter { $0.element > 0 }
            #expect(hits.count == positive.count, "\(query)")
            for h in hits { #expect(abs(Double(h.score) - want[h.row]) <= 1e-5 * want[h.row], "\(query) row \(h.row)") }
            // Best first, ties by row.
            #expect(zip(hits, hits.dropFirst()).allSatisfy { Hit.better($0, $1) })
        }
        #expect(index.search(["capital of France"], k: 1)[0].map(\.row) == [1])
    }

    @Test func saveLoadMapsTheSameIndex() throws {
        let index = try Self.build()
        let path = NSTemporaryDirectory() + "fidq-bm25-\(UUID().uuidString).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try index.save(to: path)
        let loaded = try BM25Index(path: path)
        #expect(loaded.ids == index.ids && loaded.k1 == 0.9 && loaded.b == 0.4)
        let queries = ["capital of France", "tower", "berlin germany", "see"]
        #expect(loaded.search(queries, k: 3, threads: 2) == index.search(queries, k: 3, threads: 1))
        truncate(path, 100)
        #expect(throws: RetrievalError.self) { try BM25Index(path: path) }
    }
}
