// T5LoaderTests: every way a model folder is read (safetensors, shards with an index, FiD's saved
// names, pytorch_model.bin) gives the same parameters, and every broken folder is refused by name.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

/// A scratch folder holding a copy of the fixture's config.json and the named files.
private func folder(copying files: [String], from variant: String = "v10") -> String {
    let dir = scratchFolder()
    let src = t5Fixtures.appendingPathComponent(variant).path
    for f in ["config.json"] + files { try! FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f) }
    return dir
}

private func message(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch { return "\(error)" }
}

struct T5LoaderTests {
    let reference = try! T5Model.load(folder: t5Fixtures.appendingPathComponent("v10").path)

    @Test func pytorchModelBinLoadsBitEqual() throws {
        let dir = folder(copying: ["pytorch_model.bin"])
        let m = try T5Model.load(folder: dir)
        #expect(Array(m.params.buffer) == Array(reference.params.buffer))
    }

    @Test func shardedSafetensorsWithIndexLoadBitEqual() throws {
        let dir = folder(copying: [])
        let all = reference.params.tensorMap()
        var a = TensorMap(), b = TensorMap()
        var weightMap: [String: String] = [:]
        for (i, (name, t)) in all.enumerated() {
            let shard = i % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"
            if i % 2 == 0 { a.append(name, t) } else { b.append(name, t) }
            weightMap[name] = shard
        }
        try SafeTensors.write(a, to: dir + "/model-00001-of-00002.safetensors")
        try SafeTensors.write(b, to: dir + "/model-00002-of-00002.safetensors")
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
        try index.write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let m = try T5Model.load(folder: dir)
        #expect(Array(m.params.buffer) == Array(reference.params.buffer))
        // A shard the index names but the folder lacks.
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        let text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains("model-00002-of-00002.safetensors") && text.contains("index.json"), "\(text)")
    }

    /// `save_pretrained(safe_serialization=False)` of a large model: `pytorch_model-*.bin` shards
    /// with `pytorch_model.bin.index.json` (refused as "holds no weights" before).
    @Test func shardedPytorchBinWithIndexLoadsBitEqual() throws {
        let dir = folder(copying: [])
        var entries: [[TorchCheckpointWriter.Entry]] = [[], []]
        var weightMap: [String: String] = [:]
        for (i, (name, t)) in reference.params.tensorMap().enumerated() {
            entries[i % 2].append(TorchCheckpointWriter.Entry(names: [name], shape: t.shape) { t.data })
            weightMap[name] = "pytorch_model-0000\(i % 2 + 1)-of-00002.bin"
        }
        for s in 0..<2 { try TorchCheckpointWriter.write(entries[s], to: dir + "/pytorch_model-0000\(s + 1)-of-00002.bin") }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
        try index.write(to: URL(fileURLWithPath: dir + "/pytorch_model.bin.index.json"))
        let m = try T5Model.load(folder: dir)
        #expect(Array(m.params.buffer) == Array(reference.params.buffer))
        try FileManager.default.removeItem(atPath: dir + "/pytorch_model-00001-of-00002.bin")
        let text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains("pytorch_model-00001-of-00002.bin") && text.contains("pytorch_model.bin.index.json"), "\(text)")
    }

    @Test func fidSavedNamesLoad() throws {
        let dir = folder(copying: [])
        var map = TensorMap()
        for (name, t) in reference.params.tensorMap() {
            var n = name
            if n.hasPrefix("encoder.block.") {
                // encoder.block.3.layer… → encoder.encoder.block.3.module.layer…
                let parts = n.split(separator: ".", maxSplits: 3).map(String.init)
                n = "encoder.encoder.block.\(parts[2]).module.\(parts[3])"
            } else if n.hasPrefix("encoder.") {
                n = "encoder." + n
            }
            map.append(n, t)
        }
        #expect(map.contains("encoder.encoder.block.1.module.layer.0.SelfAttention.q.weight"))
        try SafeTensors.write(map, to: dir + "/model.safetensors")
        let m = try T5Model.load(folder: dir)
        #expect(Array(m.params.buffer) == Array(reference.params.buffer))
    }

    @Test func missingWeightNamesTensorAndFile() throws {
        let dir = folder(copying: [])
        var map = TensorMap()
        for (name, t) in reference.params.tensorMap() where name != "decoder.block.1.layer.2.DenseReluDense.wo.weight" {
            map.append(name, t)
        }
        try SafeTensors.write(map, to: dir + "/model.safetensors")
        let text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains("decoder.block.1.layer.2.DenseReluDense.wo.weight") && text.contains(dir + "/model.safetensors"), "\(text)")
    }

    @Test func wrongShapeNamesTensorBothShapesAndFile() throws {
        let dir = folder(copying: [])
        var map = TensorMap()
        for (name, t) in reference.params.tensorMap() {
            map.append(name, name == "encoder.block.0.layer.0.SelfAttention.k.weight" ? Tensor.zeros([16, 8]) : t)
        }
        try SafeTensors.write(map, to: dir + "/model.safetensors")
        let text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains("encoder.block.0.layer.0.SelfAttention.k.weight") && text.contains("[16, 8]")
                && text.contains("[16, 16]") && text.contains(dir + "/model.safetensors"), "\(text)")
    }

    @Test func truncatedSafetensorsIsRefusedNamingFileAndTensor() throws {
        let dir = folder(copying: ["model.safetensors"])
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: path))
        let text = message { _ = try T5Model.load(folder: dir) }
        // The last tensor in the file is the one cut.
        let original = try SafeTensorsFile(path: t5Fixtures.appendingPathComponent("v10/model.safetensors").path)
        let last = original.entries.max(by: { $0.end < $1.end })!.name
        #expect(text.contains(path) && text.contains(last), "\(text)")
    }

    @Test func missingOrMalformedConfigIsNamed() throws {
        let dir = folder(copying: ["model.safetensors"])
        try "{\"d_model\": 16,".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        var text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains(dir + "/config.json") && text.contains("JSON"), "\(text)")
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains(dir + "/config.json"), "\(text)")
    }

    @Test func folderWithoutWeightsIsNamed() throws {
        let dir = folder(copying: [])
        let text = message { _ = try T5Model.load(folder: dir) }
        #expect(text.contains(dir) && text.contains("pytorch_model.bin"), "\(text)")
    }
}
