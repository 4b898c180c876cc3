// FiDAnswerTests: answers decoded as FiD prints them (transformers 3.0.2's decode cleanup).
import Foundation
import Testing
@testable import FiD
import Tokenizers

@Suite struct FiDAnswerTests {
    /// The real T5 tokenizer's ids of a spaced text: transformers' decode with
    /// `clean_up_tokenization_spaces=True` (3.0.2's default, FiD's) gives the cleaned text
    /// (checked with transformers 4.57.6, whose rules are 3.0.2's).
    @Test func t5AnswersAreCleanedAsFiDsDecode() throws {
        let t5 = try TestData.t5Tokenizer()
        let ids: [Int32] = [0, 12526, 3643, 9416, 3, 31, 7, 629, 3, 6, 309, 5, 254, 3, 5, 103, 3, 29, 31, 17, 1]
        #expect(t5.decode(ids, skipSpecialTokens: true) == "Carol Channing 's house , D.C . do n't")
        #expect(FiDAnswer.text(t5, ids) == "Carol Channing's house, D.C. don't")
        // Exact match sees the difference: FiD's text normalises to "channings".
        #expect(ExactMatch.score(FiDAnswer.text(t5, Array(ids[0...6])), ["Carol Channings"]))
    }

    /// Each rule in 3.0.2's order, Python's str.replace semantics (no overlaps, left to right);
    /// " do not" is not among them (the tokenizers WordPiece decoder's rule).
    @Test func rulesAreTransformers302s() {
        #expect(FiDAnswer.cleanUp("a . b ? c ! d , e ' f") == "a. b? c! d, e'f")
        #expect(FiDAnswer.cleanUp("I 'm sure you 've seen we 're do not") == "I'm sure you've seen we're do not")
        #expect(FiDAnswer.cleanUp("x  .") == "x .")  // one space removed per match, as str.replace
        #expect(FiDAnswer.cleanUp("é .\u{301}") == "é.\u{301}")  // bytes, not Characters
        #expect(FiDAnswer.cleanUp("nospace") == "nospace" && FiDAnswer.cleanUp("") == "")
    }
}
