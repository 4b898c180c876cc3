// WordPieceTests: the real MiniLM (BERT uncased) vocabulary against Hugging Face ids, from both file kinds.
import Testing

@testable import Tokenizers

@Suite struct WordPieceTests {
    @Test func miniLMTokenizerJSONMatchesHuggingFaceOnEveryFixtureString() throws {
        expectAllMatch("minilm tokenizer.json", try Assets.miniLM.get(), expected: { $0.bert })
    }

    @Test func miniLMVocabTxtMatchesHuggingFaceOnEveryFixtureString() throws {
        expectAllMatch("minilm vocab.txt", try Assets.miniLMVocab.get(), expected: { $0.bert })
    }
}

extension WordPieceTests {
    @Test func decodeMatchesHuggingFace() throws {
        let tok = try Assets.miniLM.get()
        var checked = 0
        for c in Assets.cases {
            guard let want = c.bert_decoded else { continue }
            #expect(tok.decode(c.bert, skipSpecialTokens: true) == want, "\(c.text.debugDescription)")
            checked += 1
        }
        #expect(checked > 400)
    }

    @Test func knownIdsLongWordsAndSpecials() throws {
        let tok = try Assets.miniLM.get()
        #expect(tok.encode("Who wrote the novel Atlas Shrugged?") == [101, 2040, 2626, 1996, 3117, 11568, 6345, 1029, 102])
        // 100 characters is still a word; 101 is [UNK].
        #expect(tok.encode(String(repeating: "a", count: 101), addSpecialTokens: false) == [100])
        #expect(tok.encode(String(repeating: "a", count: 100), addSpecialTokens: false) != [100])
        #expect(tok.encode("[CLS] x [MASK]", addSpecialTokens: false) == [101, 1060, 103])
        #expect(tok.prefixIds == [101] && tok.suffixIds == [102] && tok.padId == 0)
    }
}
