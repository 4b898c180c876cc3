// SentencePieceModelTests: the ModelProto reader against what sentencepiece reports for the fixture model.
import Testing

@testable import Tokenizers

@Suite struct SentencePieceModelTests {
    @Test func readsPiecesTypesAndNormalizerSpec() throws {
        let m = try SentencePieceModel(bytes: try TokenizerLoader.read(Assets.fixture("spiece.model")), path: "spiece.model")
        #expect(m.pieces.count == 4000)
        #expect(Array(m.pieces.prefix(3)) == ["<pad>", "</s>", "<unk>"])
        #expect(Array(m.types.prefix(4)) == [.control, .control, .unknown, .normal])
        #expect(m.modelType == 1 && !m.byteFallback && m.normalizerName == "nmt_nfkc" && !m.charsmap.isEmpty)
        #expect(m.normalizer.addDummyPrefix && m.normalizer.removeExtraWhitespaces && m.normalizer.escapeWhitespaces)
        // Scores fall along the vocabulary; normal pieces are all negative log-probabilities.
        #expect(zip(m.scores, m.types).allSatisfy { $1 != .normal || $0 < 0 })
    }

    @Test func wireErrorsAreThrown() {
        #expect(throws: TokenizerError.self) { try SentencePieceModel(bytes: [0x0A, 0x05, 0x0A], path: "x") }
        #expect(throws: TokenizerError.self) { try SentencePieceModel(bytes: [0x0F], path: "x") }
        #expect(throws: TokenizerError.self) { try SentencePieceModel(bytes: [], path: "x") }
    }
}
