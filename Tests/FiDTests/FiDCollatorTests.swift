// FiDCollatorTests: FiD's passage order, strings, padding and labels on the real T5 tokenizer
// (the golden comparison with FiD's own Collator is in FiDFixtureTests).
import Models
import Tensor
import Testing
@testable import FiD

@Suite struct FiDCollatorTests {
    static func example(_ i: Int, _ ctxs: [(String, String, Double?)], target: String? = nil, answers: [String] = ["a"]) -> FiDExample {
        FiDExample(index: i, question: "q\(i)?", target: target, answers: answers,
                   ctxs: ctxs.map { FiDPassage(title: $0.0, text: $0.1, score: $0.2) })
    }

    @Test func ordersByScoreStablyAReadersScoresFirst() {
        let ps = [FiDPassage(title: "a", text: "", score: 1), FiDPassage(title: "b", text: "", score: 3),
                  FiDPassage(title: "c", text: "", score: 1), FiDPassage(title: "d", text: "", score: 3)]
        #expect(FiDFormat.ordered(ps).map(\.title) == ["b", "d", "a", "c"])
        // No reader scored any: file order unless every passage has a score (FiD's strings too).
        let unscored = [FiDPassage(title: "a", text: ""), FiDPassage(title: "b", text: "")]
        #expect(FiDFormat.ordered(unscored).map(\.title) == ["a", "b"])
        let retrieved = [("a", "6.5"), ("b", "9.25"), ("c", "7")].map { FiDPassage(title: $0.0, text: "", score: Double($0.1),
                                                                                  raw: .object([("title", .string($0.0)), ("text", .string("")), ("score", .string($0.1))])) }
        #expect(FiDFormat.ordered(retrieved).map(\.title) == ["b", "c", "a"])
        // A reader scored some (numbers; the rest a retrieval's strings, however high, or none):
        // those first by score, the rest after them in file order.
        let partly = ps + [FiDPassage(title: "e", text: "")] + retrieved
        #expect(FiDFormat.ordered(partly).map(\.title) == ["b", "d", "a", "c", "e", "a", "b", "c"])
        #expect(FiDFormat.orderedIndices(partly) == [1, 3, 0, 2, 4, 5, 6, 7])
    }

    /// A nan score ranks below every number, the nans in file order: compared as is, the order
    /// depended on the sort's algorithm, and score read a nan passage in place of the best one.
    @Test func nanScoresRankLast() {
        var rng = SystemRandomNumberGenerator()
        for n in [5, 40, 200] {
            let scores: [Double] = (0..<n).map { i in i % 3 == 1 ? .nan : Double(Int.random(in: 0..<10, using: &rng)) }
            let ps = scores.enumerated().map { FiDPassage(title: "\($0.offset)", text: "", score: $0.element) }
            let numbers = scores.indices.filter { !scores[$0].isNaN }.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            #expect(FiDFormat.orderedIndices(ps) == numbers + scores.indices.filter { scores[$0].isNaN }, "\(scores)")
        }
    }

    @Test func encoderStringsAreFiDs() {
        let f = FiDFormat(nContext: 2)
        let ex = Self.example(0, [("T1", "one", 1), ("T2", "two", 2), ("T3", "three", 3)])
        #expect(f.encoderStrings(ex) == ["question: q0? title: T3 context: three", "question: q0? title: T2 context: two"])
        #expect(f.encoderStrings(Self.example(1, [])) == ["question: q1?"])
    }

    @Test func collatesPadsMasksAndLabels() throws {
        let tok = try TestData.t5Tokenizer()
        let f = FiDFormat(nContext: 3, textMaxLength: 16)
        let c = FiDCollator(format: f, tokenizer: tok)
        let a = Self.example(0, [("Ada", "Ada Lovelace was born in London in 1815.", nil), ("B", "b", nil)], target: "London")
        let b = Self.example(1, [("C", "c", nil), ("D", "d", nil), ("E", "e", nil), ("F", "f", nil)], answers: ["x"])
        let fb = c.collate([a, b], targets: ["London", "Paris France"])
        let batch = fb.batch
        #expect(batch.questions == 2 && batch.passages == 3 && batch.passageLength == 16)
        // Row 0: the first 16 content ids of the long string, no </s>, all real.
        let full = tok.encode("question: q0? title: Ada context: Ada Lovelace was born in London in 1815.", addSpecialTokens: false)
        #expect(full.count > 16)
        #expect(Array(batch.inputIds[0..<16]) == Array(full.prefix(16)) && batch.attentionMask[0..<16].allSatisfy { $0 == 1 })
        // Example a has 2 passages: its third row is fully masked padding.
        #expect(batch.inputIds[32..<48].allSatisfy { $0 == tok.padId } && batch.attentionMask[32..<48].allSatisfy { $0 == 0 })
        // Short rows are right-padded with 0 and masked.
        let short = tok.encode("question: q1? title: C context: c", addSpecialTokens: false)
        #expect(short.count < 16)
        #expect(Array(batch.inputIds[48..<(48 + short.count)]) == short && batch.attentionMask[48 + short.count] == 0)
        // Labels: pieces + </s>, -100 after; decoder inputs shifted right from the start id.
        let l0 = tok.encode("London", addSpecialTokens: false) + [1], l1 = tok.encode("Paris France", addSpecialTokens: false) + [1]
        let T = max(l0.count, l1.count)
        #expect(batch.targetLength == T)
        #expect(Array(batch.labels![0..<l0.count]) == l0 && batch.labels![l0.count..<T].allSatisfy { $0 == -100 })
        #expect(Array(batch.labels![T..<(T + l1.count)]) == l1)
        #expect(batch.decoderInputIds[0] == 0 && Array(batch.decoderInputIds[1..<l0.count]) == Array(l0.dropLast()))
        #expect(fb.passages.map(\.count) == [2, 3])
    }

    @Test func answerMaxLengthCutsTheEOSAndFixesT() throws {
        let tok = try TestData.t5Tokenizer()
        let c = FiDCollator(format: FiDFormat(nContext: 1, textMaxLength: 4, answerMaxLength: 2), tokenizer: tok)
        let long = tok.encode("a rather long answer", addSpecialTokens: false)
        #expect(long.count > 2)
        #expect(c.labelIds("a rather long answer") == Array(long.prefix(2)))
        let b = c.collate([Self.example(0, [("t", "x", nil)])], targets: ["a"]).batch
        #expect(b.targetLength == 2)
    }

    @Test func targetIsTheTargetOrASeededAnswer() {
        var rng = RNG(seed: 1)
        #expect(FiDFormat.target(Self.example(0, [], target: "t", answers: ["a", "b"]), rng: &rng) == "t")
        let ex = Self.example(0, [], answers: ["a", "b", "c"])
        var r1 = RNG(seed: 5), r2 = RNG(seed: 5)
        let draws1 = (0..<20).map { _ in FiDFormat.target(ex, rng: &r1)! }
        let draws2 = (0..<20).map { _ in FiDFormat.target(ex, rng: &r2)! }
        #expect(draws1 == draws2 && Set(draws1).count == 3)
        #expect(FiDFormat.target(Self.example(0, [], answers: []), rng: &rng) == nil)
    }
}
