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
    @Test func readerNamesAreFiDT5s() {
        #expect(FiDLayout.readerName("encoder.block.0.layer.0.SelfAttention.q.weight") == "encoder.encoder.block.0.module.layer.0.SelfAttention.q.weight")
        #expect(FiDLayout.readerName("encoder.block.11.layer.1.layer_norm.weight") == "encoder.encoder.block.11.module.layer.1.layer_norm.weight")
        #expect(FiDLayout.readerName("encoder.final_layer_norm.weight") == "encoder.encoder.final_layer_norm.weight")
        #expect(FiDLayout.readerName("decoder.block.0.layer.1.EncDecAttention.k.weight") == "decoder.block.0.layer.1.EncDecAttention.k.weight")
        #expect(FiDLayout.readerName("shared.weight") == "shared.weight")
    }

    /// The exported weights, read by fidq's own loader (which takes FiD's names, as from FiD's
    /// released readers), give the model bit for bit.
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
        #expect(original.params.count == exported.params.count
                && (0..<original.params.count).allSatisfy { original.params.base[$0].bitPattern == exported.params.base[$0].bitPattern })
    }
}
