// FiDLayoutTests: a reader's weights written as FiD's checkpoints hold them (pytorch_model.bin,
// FiDT5's wrapped encoder names, the embeddings tied under every state_dict name) load back into
// the same model; FiD's ignored options are named in order.
import Foundation
import Testing
@testable import FiD
import Jobs
import Models
import Tensor

@Suite struct FiDLayoutTests {
    /// A copy into checkpoint_dir that fails names both ends and leaves no staged file (a partial
    /// copy held the space the retry needed; Foundation's error led with the source alone).
    @Test func aFailedCopyNamesBothEndsAndLeavesNothing() throws {
        let dir = TestData.scratch("layout-copy")
        do {
            try FiDLayout.copy(dir + "/missing.json", to: dir + "/ckpt/run/out.json", tag: "t1")
            Issue.record("copied a missing file")
        } catch let e as JobError {
            #expect(e.message.hasPrefix("cannot copy \(dir)/missing.json to \(dir)/ckpt/run/out.json: "), "\(e)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/ckpt/run").isEmpty)
    }

    @Test func readerNamesAreFiDT5s() {
        #expect(FiDLayout.readerName("encoder.block.0.layer.0.SelfAttention.q.weight") == "encoder.encoder.block.0.module.layer.0.SelfAttention.q.weight")
        #expect(FiDLayout.readerName("encoder.block.11.layer.1.layer_norm.weight") == "encoder.encoder.block.11.module.layer.1.layer_norm.weight")
        #expect(FiDLayout.readerName("encoder.final_layer_norm.weight") == "encoder.encoder.final_layer_norm.weight")
        #expect(FiDLayout.readerName("decoder.block.0.layer.1.EncDecAttention.k.weight") == "decoder.block.0.layer.1.EncDecAttention.k.weight")
        #expect(FiDLayout.readerName("shared.weight") == "shared.weight")
    }

    /// The exported weights, read by fidq's own loader (which takes FiD's names, as from FiD's
    /// released readers), give the model bit for bit, plus transformers 3.0.2's cross-attention
    /// bias as zeros (3.0.2 starts a missing one at random), with the same logits.
    @Test func exportedReaderWeightsLoadToTheSameModel() throws {
        let dir = TestData.scratch("fid-layout")
        try FileManager.default.copyItem(atPath: ReaderFixture.folder + "/config.json", toPath: dir + "/config.json")
        try FiDLayout.writeTorchWeights(folder: ReaderFixture.folder, names: .reader, to: dir + "/pytorch_model.bin")
        let file = try TorchCheckpointFile(path: dir + "/pytorch_model.bin")
        #expect(file.names.contains("encoder.encoder.block.1.module.layer.1.DenseReluDense.wo.weight"))
        #expect(file.names.contains("encoder.encoder.final_layer_norm.weight"))
        #expect(!file.names.contains { $0.hasPrefix("encoder.block.") })
        #expect(file.tiedGroups == [["shared.weight", "encoder.encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"]],
                "\(file.tiedGroups)")
        let original = try T5Model.load(folder: ReaderFixture.folder), exported = try T5Model.load(folder: dir)
        #expect(!original.hasCrossAttentionBias && exported.hasCrossAttentionBias && exported.useCrossAttentionBias)
        let bias = try #require(exported.params.layout.entry(T5Model.crossBiasName))
        #expect(bias.shape == [original.config.relativeAttentionNumBuckets, original.config.numHeads])
        #expect(exported.params.count == original.params.count + bias.count)
        #expect(exported.params.buffer(T5Model.crossBiasName).allSatisfy { $0.bitPattern == 0 })
        for e in original.params.layout.entries {
            let a = original.params.buffer(e.name), b = exported.params.buffer(e.name)
            #expect(zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(e.name)")
        }
        // A FiD batch (2 questions × 2 passages of 4, padding, an ignored label): the zero bias
        // computes what no bias does.
        let ids: [Int32] = [5, 6, 7, 1, 8, 9, 0, 0, 3, 4, 5, 6, 10, 0, 0, 0]
        let labels: [Int32] = [4, 9, 1, 7, 1, -100]
        let batch = T5Batch(questions: 2, passages: 2, passageLength: 4, inputIds: ids, attentionMask: ids.map { $0 == 0 ? 0 : 1 },
                            decoderInputIds: T5Batch.shiftRight(labels, rows: 2, start: 0, pad: 0), labels: labels)
        let a = original.forward(batch), b = exported.forward(batch)
        #expect(a.logits == b.logits && a.loss == b.loss)
    }
}
