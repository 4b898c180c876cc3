// UnigramTests: T5's real tokenizer.json and a real spiece.model against Hugging Face and sentencepiece ids.
import Foundation
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

extension UnigramTests {
    /// spiece.model turned into a Hugging Face tokenizer.json the way transformers' T5Converter does
    /// (the fixture holds the converted file without its vocabulary and charsmap; both come back from
    /// the model), so the JSON `Precompiled`/`Strip`/`Replace`/`Metaspace` path is checked against HF ids.
    static func convertedSpiece() throws -> any Tokenizer {
        try Edges.loadJSON(try convertedSpieceJSON(), name: "converted")
    }

    /// The converted tokenizer.json as a JSON object, for variants of it.
    static func convertedSpieceJSON() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Assets.fixture("tokenizers.json")))
        let meta = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["meta"] as? [String: Any])
        var skeleton = try #require(meta["hf_spm_skeleton"] as? [String: Any])
        let model = try SentencePieceModel(bytes: try TokenizerLoader.read(Assets.fixture("spiece.model")), path: "spiece.model")
        var vocab: [[Any]] = zip(model.pieces, model.scores).map { [$0, Double($1)] }
        for k in stride(from: 99, through: 0, by: -1) { vocab.append(["<extra_id_\(k)>", 0.0]) }
        var m = try #require(skeleton["model"] as? [String: Any])
        m["vocab"] = vocab
        skeleton["model"] = m
        var norm = try #require(skeleton["normalizer"] as? [String: Any])
        var list = try #require(norm["normalizers"] as? [[String: Any]])
        list[0]["precompiled_charsmap"] = Data(model.charsmap).base64EncodedString()
        norm["normalizers"] = list
        skeleton["normalizer"] = norm
        return skeleton
    }

    @Test func convertedSpieceTokenizerJSONMatchesHuggingFaceOnEveryFixtureString() throws {
        expectAllMatch("converted spiece tokenizer.json", try UnigramTests.convertedSpiece(), expected: { $0.hf_spm })
    }
}

extension UnigramTests {
    @Test func t5DecodeMatchesHuggingFace() throws {
        let tok = try Assets.t5.get()
        var checked = 0
        for c in Assets.cases {
            guard let want = c.t5_decoded else { continue }
            #expect(tok.decode(c.t5, skipSpecialTokens: true) == want, "\(c.text.debugDescription)")
            checked += 1
        }
        #expect(checked > 400)
    }

    @Test func spieceDecodeAndPiecesMatchSentencePiece() throws {
        let tok = try Assets.spiece.get()
        var checked = 0
        for c in Assets.cases {
            guard let pieces = c.spm_pieces, let want = c.spm_decoded else { continue }
            // sentencepiece's own ids for its pieces (an unknown surface maps to <unk>).
            let ids = pieces.map { p -> Int32 in
                let i = tok.id(for: p) ?? 2
                return i >= 4000 ? 2 : i
            }
            #expect(tok.decode(ids, skipSpecialTokens: false) == want, "\(c.text.debugDescription)")
            if !c.text.contains("<") && !ids.contains(2) {
                #expect(tok.pieces(c.text) == pieces, "\(c.text.debugDescription)")
            }
            checked += 1
        }
        #expect(checked > 400)
    }

    @Test func t5KnownIdsAndSpecialTokens() throws {
        let tok = try Assets.t5.get()
        #expect(tok.encode("Hello world") == [8774, 296, 1])
        #expect(tok.encode("Hello world", addSpecialTokens: false) == [8774, 296])
        #expect(tok.encode("<extra_id_0> x <extra_id_99></s>", addSpecialTokens: false).first == 32099)
        #expect(tok.encode("<extra_id_99>", addSpecialTokens: false) == [32000])
        #expect(tok.id(for: "</s>") == 1 && tok.padId == 0 && tok.suffixIds == [1] && tok.prefixIds.isEmpty)
        #expect(tok.decode([8774, 296, 1], skipSpecialTokens: true) == "Hello world")
        #expect(tok.decode([8774, 296, 1], skipSpecialTokens: false) == "Hello world</s>")
    }

    @Test func spieceExtraIdsAreT5s() throws {
        let tok = try Assets.spiece.get()
        #expect(tok.vocabSize == 4100)
        #expect(tok.encode("a <extra_id_0>", addSpecialTokens: false).last == 4099)
        #expect(tok.encode("<extra_id_99>", addSpecialTokens: false) == [4000])
        #expect(tok.encode("answer", addSpecialTokens: true).last == 1)
    }
}
