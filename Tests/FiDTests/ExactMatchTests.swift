// ExactMatchTests: FiD's normalize_answer and ems (src/evaluation.py), outputs from CPython 3.11.
import Testing
@testable import FiD

@Suite struct ExactMatchTests {
    // normalize_answer(s) for each s, printed by FiD's own function.
    @Test(arguments: [
        ("The Beatles", "beatles"),
        ("  A   tale of  two cities. ", "tale of two cities"),
        ("an apple, the end", "apple end"),
        ("Théâtre d'Orsay", "théâtre dorsay"),
        ("the-the", "thethe"),
        ("a–b", "–b"),
        ("U.S.A.", "usa"),
        ("answer\tof\nthe day", "answer of day"),
        ("theatre", "theatre"),
        ("", ""),
        ("1,000", "1000"),
        ("THE", ""),
    ])
    func normalizeMatchesFiD(input: String, expected: String) {
        #expect(ExactMatch.normalize(input) == expected)
    }

    @Test func matchesAnyAnswer() {
        #expect(ExactMatch.score("the Beatles!", ["Rolling Stones", "Beatles"]))
        #expect(!ExactMatch.score("Beatles band", ["Beatles"]))
        #expect(!ExactMatch.score("x", []))
    }
}
