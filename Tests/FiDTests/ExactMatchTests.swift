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
        // Printed by FiD's function with regex 2026.11.19 (its `\b`, whose `\w` leaves out "²"
        // and "½") and Python's lower() (final sigma) and split() (U+001C is a space).
        ("the²", "²"),
        ("THE½ cat", "½ cat"),
        ("the²nd", "²nd"),
        ("ΟΔΟΣ", "οδος"),
        ("ΣΟΦΟΣ ΛΟΓΟΣ", "σοφος λογος"),
        ("the‿end", "the‿end"),
        ("a\u{200D}the", "a\u{200D}the"),
        ("Ⅻthe", "ⅻthe"),
        ("an\u{301}", "an\u{301}"),
        ("a1the", "a1the"),
        ("the\u{1C}end", "end"),
        ("the\u{3000}end", "end"),
    ])
    func normalizeMatchesFiD(input: String, expected: String) {
        #expect(ExactMatch.normalize(input) == expected)
    }

    @Test func matchesAnyAnswer() {
        #expect(ExactMatch.score("the Beatles!", ["Rolling Stones", "Beatles"]))
        #expect(!ExactMatch.score("Beatles band", ["Beatles"]))
        #expect(!ExactMatch.score("x", []))
        // Code point by code point, as FiD's Python compares: "café" composed and decomposed differ.
        #expect(ExactMatch.score("caf\u{E9}", ["CAF\u{C9}"]))
        #expect(!ExactMatch.score("caf\u{E9}", ["cafe\u{301}"]) && !ExactMatch.score("cafe\u{301}", ["caf\u{E9}"]))
    }
}
