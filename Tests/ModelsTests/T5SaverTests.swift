// T5SaverTests: a saved folder reloads bit-equal, and the committed folders fidq wrote load in
// transformers with the same logits (ops/fixtures/t5_saved.py checked them there).
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

/// The committed folders fidq saved: the v10 (ReLU, tied) and v11 (gated-gelu, untied) shapes of
/// the t5 fixtures, so their batches apply.
private let savedFixtures = t5Fixtures.appendingPathComponent("saved")

/// The model each committed folder holds: the fixture variant's config, fidq's seeded init.
private func savedModel(_ variant: String) throws -> T5Model {
    let config = try T5Config.load(path: t5Fixtures.appendingPathComponent(variant).path + "/config.json")
    let m = T5Model(config: config)
    m.initialize(seed: variant == "v10" ? 11 : 12)
    return m
}

struct T5SaverTests {
    @Test(arguments: ["v10", "v11"])
    func savedFolderReloadsBitEqual(_ variant: String) throws {
        let m = try savedModel(variant)
        let dir = scratchFolder() + "/model"
        try T5Saver.save(m, to: dir)
        let back = try T5Model.load(folder: dir)
        #expect(back.config == m.config)
        #expect(Array(back.params.buffer) == Array(m.params.buffer))
        // Tied weights are stored once, as save_pretrained stores them.
        let names = try SafeTensorsFile(path: dir + "/model.safetensors").names
        #expect(names.contains("shared.weight") && !names.contains("encoder.embed_tokens.weight"))
        #expect(names.contains("lm_head.weight") == !m.config.tieWordEmbeddings)
        // An existing folder is refused unless replaced.
        #expect(throws: ModelLoadError.self) { try T5Saver.save(m, to: dir) }
        try T5Saver.save(m, to: dir, replace: true)
    }

    @Test func tokenizerIsCopiedUnderItsStandardName() throws {
        let m = try savedModel("v10")
        let dir = scratchFolder()
        let tok = dir + "/my.model"
        try Data("not really a model".utf8).write(to: URL(fileURLWithPath: tok))
        try T5Saver.write(m, into: dir, tokenizer: tok)
        #expect(FileManager.default.contents(atPath: dir + "/spiece.model") == Data("not really a model".utf8))
        #expect(throws: ModelLoadError.self) { try T5Saver.write(m, into: dir, tokenizer: dir + "/missing.json") }
    }

    /// The saver still writes the committed bytes (`FIDQ_WRITE_FIXTURES=1` rewrites them; then run
    /// ops/fixtures/t5_saved.py).
    @Test(arguments: ["v10", "v11"])
    func saverWritesTheCommittedFolder(_ variant: String) throws {
        let m = try savedModel(variant)
        let committed = savedFixtures.appendingPathComponent(variant).path
        if ProcessInfo.processInfo.environment["FIDQ_WRITE_FIXTURES"] == "1" {
            try FileManager.default.createDirectory(atPath: committed, withIntermediateDirectories: true)
            try T5Saver.write(m, into: committed)
        }
        let dir = scratchFolder()
        try T5Saver.write(m, into: dir)
        for f in ["config.json", "model.safetensors"] {
            let want = try #require(FileManager.default.contents(atPath: committed + "/" + f), "missing \(committed)/\(f)")
            #expect(FileManager.default.contents(atPath: dir + "/" + f) == want, "\(f) differs from the committed one")
        }
    }

    /// transformers' `from_pretrained` of the committed folder gave these logits on the variant's batch.
    @Test(arguments: ["v10", "v11"])
    func committedFolderGivesTransformersLogits(_ variant: String) throws {
        let folder = savedFixtures.appendingPathComponent(variant).path
        let m = try T5Model.load(folder: folder)
        let batch = try T5Fixture(variant).batch
        let expected = try SafeTensorsFile(path: folder + "/expected.safetensors")
        let out = m.forward(batch)
        let r = compare("logits", out.logits, try expected.tensor("logits"), rtol: 1e-4, atol: 1e-5)
        #expect(r.ok, "\(r)")
        let loss = try expected.tensor("loss").data[0]
        #expect(abs(out.loss! - loss) <= 1e-4 * abs(loss), "loss \(out.loss!) expected \(loss)")
    }
}
