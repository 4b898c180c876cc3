// SentencePieceModelTests: the ModelProto reader against what sentencepiece reports for the fixture model.
import Foundation
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

    /// spiece.model with the fixture's USER_DEFINED pieces appended (more `ModelProto.pieces` entries).
    static func userDefinedModel() throws -> (any Tokenizer, Edges.UserDefined) {
        let ud = try Edges.file.get().user_defined
        let suffix = try #require(Data(base64Encoded: ud.model_suffix))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-ud-\(UUID().uuidString).model")
        try (Data(try TokenizerLoader.read(Assets.fixture("spiece.model"))) + suffix).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return (try TokenizerLoader.load(url.path, extraIds: 0), ud)
    }

    /// USER_DEFINED pieces are copied through normalisation unchanged (longest first) and always win in
    /// the lattice, as sentencepiece does: "ﬁx" stays one piece although nmt_nfkc maps "ﬁ" to "fi".
    @Test func userDefinedPiecesMatchSentencePiece() throws {
        let (tok, ud) = try SentencePieceModelTests.userDefinedModel()
        #expect(tok.vocabSize == 4000 + ud.symbols.count)
        for (i, s) in ud.symbols.enumerated() { #expect(tok.id(for: s) == Int32(4000 + i), "\(s)") }
        #expect(tok.pieces("a \u{FB01}x @@@@@") == ["\u{2581}a", "\u{2581}", "\u{FB01}x", "\u{2581}", "@@", "@@@"])
        var bad = 0
        for (k, text) in ud.texts.enumerated() {
            let got = tok.encode(text, addSpecialTokens: false)
            if got != ud.ids[k] {
                bad += 1
                if bad <= 5 { Issue.record("\(text.debugDescription)\n got \(got)\nwant \(ud.ids[k])") }
            }
            // Without control pieces in the text, sentencepiece's own pieces and decoding apply directly.
            if !["<pad>", "</s>", "<unk>"].contains(where: text.contains) {
                #expect(tok.pieces(text) == ud.pieces[k] || ud.ids[k].contains(2), "\(text.debugDescription)")
                #expect(tok.decode(got, skipSpecialTokens: false) == ud.decoded[k], "\(text.debugDescription)")
            }
        }
        #expect(bad == 0, "\(bad) of \(ud.texts.count) strings differ")
    }
}
