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
