// GenerationTests: greedy and beam search against transformers' own `generate`, replaying the
// logits it saw (ops/fixtures/generation.py), plus the argument checks.
import Foundation
import Testing
import TestSupport
@testable import Models

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures").appendingPathComponent("generation")

/// A stepper that answers from a table of (question, decoder prefix) → logits recorded from
/// transformers. It tracks each row's prefix itself, so only a search that feeds the right tokens
/// and reorders the rows as it reorders its beams finds its prefixes in the table.
struct ReplayStepper: DecodingStepper {
    let vocabSize: Int
    let rows: Int
    let table: [Int: [[Int32]: Int]]  // question → prefix → row of `logits`
    let logits: [Float]
    let questionOf: [Int]
    var prefixes: [[Int32]]
    /// Greedy feeds finished rows again; such a prefix (eos after the start) gets zeros.
    let finishedRowsAllowed: Bool
    let eos: Int32
    var steps = 0

    init(fixture: Fixture, case c: [String: Any], beams: Int, finishedRowsAllowed: Bool) throws {
        let name = c["name"] as! String
        let v = Int(try fixture.number("vocab_size"))
        let questions = c["questions"] as! Int
        let rowsTensor = try fixture.tensor(name + ".logits")
        vocabSize = v
        rows = questions * beams
        logits = rowsTensor.data
        var t: [Int: [[Int32]: Int]] = [:]
        for (i, entry) in (c["table"] as! [[String: Any]]).enumerated() {
            let prefix = (entry["prefix"] as! [Int]).map(Int32.init)
            t[entry["question"] as! Int, default: [:]][prefix] = i
        }
        table = t
        questionOf = (0..<rows).map { $0 / beams }
        prefixes = [[Int32]](repeating: [], count: rows)
        self.finishedRowsAllowed = finishedRowsAllowed
        eos = Int32(try fixture.number("eos"))
        #expect(rowsTensor.shape == [(c["table"] as! [Any]).count, v], "\(name): logits table shape")
    }

    mutating func step(_ tokens: UnsafeBufferPointer<Int32>, logits out: UnsafeMutablePointer<Float>) throws {
        precondition(tokens.count == rows)
        steps += 1
        for r in 0..<rows {
            prefixes[r].append(tokens[r])
            if let i = table[questionOf[r]]?[prefixes[r]] {
                for j in 0..<vocabSize { out[r * vocabSize + j] = logits[i * vocabSize + j] }
            } else if finishedRowsAllowed && prefixes[r].dropFirst().contains(eos) {
                (out + r * vocabSize).update(repeating: 0, count: vocabSize)
            } else {
                throw FixtureError("row \(r) (question \(questionOf[r])) fed prefix \(prefixes[r]), which transformers never visited")
            }
        }
    }

    mutating func reorder(_ source: UnsafeBufferPointer<Int32>) {
        precondition(source.count == rows)
        for r in 0..<rows { precondition(questionOf[Int(source[r])] == questionOf[r], "reorder across questions") }
        prefixes = source.map { prefixes[Int($0)] }
    }
}

@Suite struct GenerationTests {
    static func load() throws -> (Fixture, [[String: Any]]) {
        let f = try Fixture("decoding.json", in: fixtures)
        return (f, f.meta["cases"] as! [[String: Any]])
    }

    @Test func matchesTransformersGenerate() throws {
        let (f, cases) = try Self.load()
        let start = Int32(try f.number("start")), eos = Int32(try f.number("eos")), pad = Int32(try f.number("pad"))
        #expect(cases.count >= 9)
        var sawBeam = Set<Int>(), sawPenalty = Set<Double>()
        for c in cases {
            let name = c["name"] as! String
            let beams = c["num_beams"] as! Int
            let questions = c["questions"] as! Int
            let maxLength = c["max_length"] as! Int
            let lp = (c["length_penalty"] as! NSNumber).floatValue
            // transformers pads a batch's shorter beam results (with eos, T5's pad id 0 being
            // falsy); fidq returns each hypothesis unpadded, so compare up to the first eos.
            let expected = (c["expected"] as! [[Int]]).map { row -> [Int32] in
                let ids = row.map(Int32.init)
                guard let end = ids.dropFirst().firstIndex(of: eos) else { return ids }
                return Array(ids[...end])
            }
            var stepper = try ReplayStepper(fixture: f, case: c, beams: beams, finishedRowsAllowed: beams == 1)
            let got: [[Int32]]
            if beams == 1 {
                // transformers' generate(num_beams=1) is greedy search.
                got = try Generation.greedy(&stepper, questions: questions, start: start, eos: eos, maxLength: maxLength)
            } else {
                got = try Generation.beamSearch(
                    &stepper, questions: questions, numBeams: beams, start: start, eos: eos, pad: pad,
                    maxLength: maxLength, lengthPenalty: lp)
            }
            #expect(got == expected, "\(name)")
            // Every step transformers took, and no more: it stops (early) exactly where transformers did.
            let longest = (c["table"] as! [[String: Any]]).map { ($0["prefix"] as! [Any]).count }.max()!
            #expect(stepper.steps == longest, "\(name): \(stepper.steps) steps, transformers took \(longest)")
            sawBeam.insert(beams)
            sawPenalty.insert(Double(lp))
        }
        #expect(sawBeam == [1, 2, 3, 4])
        #expect(sawPenalty == [0.5, 1, 2])
    }

    /// The fixture is worth its name only if it holds the cases the search must get right.
    @Test func fixtureCoversEarlyEosCutoffAndPenalties() throws {
        let (f, cases) = try Self.load()
        let eos = Int(try f.number("eos"))
        func expected(_ name: String) -> [[Int]] {
            cases.first { $0["name"] as! String == name }!["expected"] as! [[Int]]
        }
        // Greedy: a row ending in eos before the max length, and a row cut at the max length.
        let greedy = expected("greedy_q3_len10")
        #expect(greedy.contains { $0.last == eos && $0.count < 10 })
        #expect(greedy.contains { $0.count == 10 && $0.last != eos })
        // Length penalty changes the answer.
        #expect(expected("beam4_q3_len10_lp0.5") != expected("beam4_q3_len10_lp1"))
        #expect(expected("beam4_q3_len10_lp1") != expected("beam4_q3_len10_lp2"))
        // Padding: a hypothesis shorter than the batch's longest is padded (with eos, pad being 0).
        #expect(expected("beam4_q3_len10_lp1").contains { $0.suffix(2) == [eos, eos] })
        // Beam search differs from greedy somewhere.
        #expect(expected("beam4_q3_len10_lp1") != greedy)
    }

    @Test func refusesMismatchedRowsAndShortMaxLength() throws {
        let (f, cases) = try Self.load()
        var s = try ReplayStepper(fixture: f, case: cases[0], beams: 1, finishedRowsAllowed: true)
        #expect(throws: GenerationError.self) {
            try Generation.greedy(&s, questions: 2, start: 0, eos: 1, maxLength: 10)
        }
        #expect(throws: GenerationError.self) {
            try Generation.greedy(&s, questions: 3, start: 0, eos: 1, maxLength: 1)
        }
        #expect(throws: GenerationError.self) {
            try Generation.greedy(&s, questions: 3, start: 0, eos: 40, maxLength: 10)
        }
        #expect(throws: GenerationError.self) {
            try Generation.beamSearch(&s, questions: 3, numBeams: 2, start: 0, eos: 1, pad: 0, maxLength: 10)
        }
        #expect(throws: GenerationError.self) {
            try Generation.beamSearch(&s, questions: 3, numBeams: 0, start: 0, eos: 1, pad: 0, maxLength: 10)
        }
        #expect(s.steps == 0)
    }

    @Test func stepperErrorsPropagate() throws {
        let (f, cases) = try Self.load()
        let c = cases.first { $0["num_beams"] as! Int == 4 }!
        // Wrong start token: the first prefix is unknown, and the stepper's error reaches the caller.
        var s = try ReplayStepper(fixture: f, case: c, beams: 4, finishedRowsAllowed: false)
        #expect(throws: FixtureError.self) {
            try Generation.beamSearch(&s, questions: 3, numBeams: 4, start: 5, eos: 1, pad: 0, maxLength: 10)
        }
    }
}
