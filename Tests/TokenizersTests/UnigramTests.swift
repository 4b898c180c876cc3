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
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-converted-\(getpid()).json")
        try JSONSerialization.data(withJSONObject: skeleton).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try TokenizerLoader.load(url.path)
    }

    @Test func convertedSpieceTokenizerJSONMatchesHuggingFaceOnEveryFixtureString() throws {
        expectAllMatch("converted spiece tokenizer.json", try UnigramTests.convertedSpiece(), expected: { $0.hf_spm })
    }
}
