// TokenizerLoaderTests: file kinds are recognised, and broken files are thrown errors naming file and field.
import Foundation
import Testing
import TestSupport

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

    /// Ids past the vocabulary and the added tokens (or negative, or not whole) are refused naming
    /// the field: they trapped converting to Int32, indexed before the table, or padded the table
    /// up to the id (gigabytes from a small file).
    @Test func wildIdsAreRefusedNamingTheField() throws {
        func unigram(added id: String, extra: String = "") -> String {
            #"{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0], ["a", -1], ["b", -2]]}, "#
                + #""added_tokens": [{"id": \#(id), "content": "<x>", "special": true}]\#(extra)}"#
        }
        func wordPiece(vocabID: String = "2", extra: String = "") -> String {
            #"{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "[CLS]": 1, "a": \#(vocabID)}\#(extra)}, "#
                + #""pre_tokenizer": {"type": "BertPreTokenizer"}}"#
        }
        let cases: [(String, [String])] = [
            (unigram(added: "-3"), ["added_tokens[0].id", "0..<4", "-3"]),
            (unigram(added: "2147483648"), ["added_tokens[0].id", "2147483648"]),
            (unigram(added: "1000000000000"), ["added_tokens[0].id"]),
            (unigram(added: "2.5"), ["added_tokens[0].id", "2.5"]),
            (unigram(added: "3", extra: #", "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "</s>"}}], "special_tokens": {"</s>": {"ids": [8589934592]}}}"#),
             ["post_processor.special_tokens.</s>.ids", "8589934592"]),
            (wordPiece(vocabID: "2147483648"), ["model.vocab.a", "2147483648"]),
            (wordPiece(vocabID: "1.5"), ["model.vocab.a", "1.5"]),
            (wordPiece(extra: #", "max_input_chars_per_word": -1"#), ["max_input_chars_per_word", "a positive integer"]),
            (#"{"model": {"type": "Unigram", "unk_id": 2.7, "vocab": [["<unk>", 0], ["a", -1], ["b", -2]]}}"#, ["model.unk_id"]),
        ]
        for (json, words) in cases {
            let path = try temp("tokenizer.json", Array(json.utf8))
            let m = message { try TokenizerLoader.load(path) }
            #expect(m.contains(path) && words.allSatisfy { m.contains($0) }, "\(json): \(m)")
        }
        var bert = try JSONSerialization.jsonObject(with: Data(wordPiece().utf8)) as! [String: Any]
        bert["post_processor"] = ["type": "BertProcessing", "cls": ["[CLS]", 4_294_967_296], "sep": ["[CLS]", 1]]
        let path = try temp("tokenizer.json", Array(try JSONSerialization.data(withJSONObject: bert)))
        let m = message { try TokenizerLoader.load(path) }
        #expect(m.contains("post_processor.cls") && m.contains("4294967296"), "\(m)")
        // The last id the file can name (the vocabulary, then one per added token) is kept.
        let fine = try temp("tokenizer.json", Array(unigram(added: "3").utf8))
        #expect(try TokenizerLoader.load(fine).encode("a<x>", addSpecialTokens: false) == [1, 3])
        // A sentencepiece piece type of 2^64 − 1 (a ten-byte varint) trapped converting to Int.
        let piece: [UInt8] = [0x0A, 0x01, 0x78, 0x18] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
        let model = try temp("big.model", [0x0A, UInt8(piece.count)] + piece)
        let t = message { try TokenizerLoader.load(model) }
        #expect(t.contains(model) && t.contains("pieces[0].type") && t.contains("18446744073709551615"), "\(t)")
    }

    /// Random damage to real tokenizer files is a thrown TokenizerError or a tokenizer that
    /// encodes: never a trap. The JSON files load slowly (MB each), so they get fewer rounds.
    @Test func damagedFilesNeverTrap() throws {
        let files: [(path: String, rounds: Int)] = [
            (Assets.fixture("spiece.model"), 300), (try Assets.path("minilm/vocab.txt"), 150),
            (try Assets.path("minilm/tokenizer.json"), 20), (try Assets.path("t5/tokenizer.json"), 8),
        ]
        let scale = ProcessInfo.processInfo.environment["FIDQ_FUZZ_ROUNDS"].flatMap { Int($0) }.map { Double($0) / 3000 } ?? 1
        var rng = SplitMix(seed: 0x70CE)
        var outcomes = [0, 0]
        for (path, rounds) in files {
            let valid = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            for round in 0..<Int(Double(rounds) * scale) {
                let damaged = try temp((path as NSString).lastPathComponent, rng.damaged(valid, round: round))
                defer { try? FileManager.default.removeItem(atPath: (damaged as NSString).deletingLastPathComponent) }
                do {
                    let t = try TokenizerLoader.load(damaged)
                    _ = t.encode("Hello, wörld! 123 ünïcödé 日本語 <extra_id_0> [CLS] a\tb", maxLength: 40)
                    outcomes[0] += 1
                } catch is TokenizerError {
                    outcomes[1] += 1
                }
            }
        }
        #expect(outcomes[0] > 0 && outcomes[1] > 0, "\(outcomes)")
    }
}
