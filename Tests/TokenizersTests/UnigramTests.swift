// UnigramTests: T5's real tokenizer.json and a real spiece.model against Hugging Face and sentencepiece ids.
import Testing

@testable import Tokenizers

@Suite struct UnigramTests {
    @Test func t5TokenizerJSONMatchesHuggingFaceOnEveryFixtureString() throws {
        let tok = try Assets.t5.get()
        #expect(tok.vocabSize == 32100)
        expectAllMatch("t5 tokenizer.json", tok, expected: { $0.t5 })
    }

    @Test func spieceModelMatchesSentencePieceOnEveryFixtureString() throws {
        let tok = try Assets.spiece.get()
        expectAllMatch("spiece.model", tok, expected: { $0.spm }, addSpecial: false)
    }
}
