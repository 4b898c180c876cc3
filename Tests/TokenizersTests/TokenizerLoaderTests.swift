// TokenizerLoaderTests: file kinds are recognised, and broken files are thrown errors naming file and field.
import Foundation
import Testing

@testable import Tokenizers

@Suite struct TokenizerLoaderTests {
    func temp(_ name: String, _ bytes: [UInt8]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-loader-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func message(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }

    @Test func foldersAndEachFileKindLoad() throws {
        let folder = (try Assets.path("minilm/vocab.txt") as NSString).deletingLastPathComponent
        #expect(try TokenizerLoader.load(folder) is WordPieceTokenizer)
        #expect(try TokenizerLoader.load(try Assets.path("t5/tokenizer.json")) is UnigramTokenizer)
        #expect(try TokenizerLoader.load(Assets.fixture("spiece.model")) is UnigramTokenizer)
    }

    @Test func brokenFilesNameTheFileAndWhatIsWrong() throws {
        let missing = message { try TokenizerLoader.load("/nonexistent/tokenizer.json") }
        #expect(missing.contains("/nonexistent/tokenizer.json") && missing.contains("no such file"))

        let badJSON = try temp("tokenizer.json", Array("{\"model\": ".utf8))
        #expect(message { try TokenizerLoader.load(badJSON) }.contains("valid JSON"))

        let noModel = try temp("tokenizer.json", Array("{\"version\": \"1.0\"}".utf8))
        let m = message { try TokenizerLoader.load(noModel) }
        #expect(m.contains(noModel) && m.contains("`model`") && m.contains("an object"))

        let bpe = try temp("tokenizer.json", Array("{\"model\": {\"type\": \"BPE\"}}".utf8))
        #expect(message { try TokenizerLoader.load(bpe) }.contains("`model.type` is BPE"))

        let badVocab = try temp("tokenizer.json", Array("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"a\"]]}}".utf8))
        #expect(message { try TokenizerLoader.load(badVocab) }.contains("model.vocab[0]"))

        let noUnk = try temp("vocab.txt", Array("[PAD]\n[CLS]\n[SEP]\nhello\n".utf8))
        let u = message { try TokenizerLoader.load(noUnk) }
        #expect(u.contains("unk_token") && u.contains("[UNK]"))

        var model = try TokenizerLoader.read(Assets.fixture("spiece.model"))
        model.removeLast(model.count / 2)
        let truncated = try temp("spiece.model", model)
        let t = message { try TokenizerLoader.load(truncated) }
        #expect(t.contains(truncated) && t.contains("truncated"))

        let garbage = try temp("junk.model", [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(message { try TokenizerLoader.load(garbage) }.contains(garbage))

        let unknown = try temp("weights.bin", [0, 1, 2, 3])
        #expect(message { try TokenizerLoader.load(unknown) }.contains("expected a tokenizer.json"))
    }
}
