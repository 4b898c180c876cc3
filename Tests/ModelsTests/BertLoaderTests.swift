// BertLoaderTests: folders that load (FiD prefix, none, pickle), what a save writes and reads back,
// and bad input: another architecture, a projection size that does not match the weights, a
// missing weight, a folder without a tokenizer.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

/// A scratch folder removed at the end of the test.
func scratchFolder(_ name: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-bert-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// Copies a fixture folder's files into a new scratch folder.
func copyFixture(_ variant: String) throws -> String {
    let dst = try scratchFolder(variant)
    let src = bertFixtures.appendingPathComponent(variant).path
    for f in try FileManager.default.contentsOfDirectory(atPath: src) {
        try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dst + "/" + f)
    }
    return dst
}

/// Rewrites config.json with `edit` applied.
func editConfig(_ folder: String, _ edit: (inout [String: Any]) -> Void) throws {
    let path = folder + "/config.json"
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    edit(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
}

func loadError(_ folder: String) -> String {
    do {
        _ = try BertRetriever.load(folder: folder)
        return "loaded"
    } catch {
        return "\(error)"
    }
}

struct BertLoaderTests {
    @Test func namesLoseTheirPrefixes() {
        #expect(BertRetriever.normalizedName("model.encoder.layer.0.output.dense.weight") == "encoder.layer.0.output.dense.weight")
        #expect(BertRetriever.normalizedName("bert.embeddings.LayerNorm.gamma") == "embeddings.LayerNorm.weight")
        #expect(BertRetriever.normalizedName("embeddings.LayerNorm.beta") == "embeddings.LayerNorm.bias")
        #expect(BertRetriever.normalizedName("proj.weight") == "proj.weight")
    }

    /// A saved folder reads back bit for bit, under FiD's names (and without projection also the
    /// plain BertModel names), with the pooler and the config's retriever fields.
    @Test(arguments: ["proj_mean", "noproj_cls"])
    func saveThenLoadIsTheSameModel(_ variant: String) throws {
        let f = try BertFixture(variant)
        let dir = try scratchFolder("save")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try f.model.save(folder: dir)
        let back = try BertRetriever.load(folder: dir)
        #expect(back.config == f.model.config)
        #expect(Array(back.params.buffer) == Array(f.model.params.buffer))
        #expect(back.pooler == f.model.pooler && back.pooler.count == 2)
        let names = Set(try SafeTensorsFile(path: dir + "/model.safetensors").names)
        #expect(names.contains("model.encoder.layer.1.output.dense.weight") && names.contains("model.pooler.dense.weight"))
        #expect(names.contains("encoder.layer.1.output.dense.weight") == !f.model.config.projection)
        #expect(names.contains("proj.weight") == f.model.config.projection)
        let out = back.forward(f.batch), want = f.model.forward(f.batch)
        #expect(out.scores == want.scores)
        // The layout's `model.` aliases let a bare slab load the saved file by name (training resumes so).
        let slab = ParameterSlab(layout: f.model.layout)
        try slab.load(from: SafeTensorsFile(path: dir + "/model.safetensors"))
        #expect(Array(slab.buffer) == Array(f.model.params.buffer))
        // ops/fixtures/bert_saved_check.py loads such folders with FiD's Retriever and BertModel.
        if let keep = ProcessInfo.processInfo.environment["FIDQ_BERT_SAVE_TO"] {
            try f.model.save(folder: keep + "/" + variant)
        }
    }

    /// A retriever saved as `pytorch_model-*.bin` shards with their index loads as the
    /// safetensors folder does, pooler included, and so does its start for train_retriever.
    @Test func shardedPytorchBinLoads() throws {
        let f = try BertFixture("proj_mean")
        let dir = try scratchFolder("bin-shards")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try f.model.save(folder: dir)
        let saved = try SafeTensorsFile(path: dir + "/model.safetensors")
        var entries: [[TorchCheckpointWriter.Entry]] = [[], []]
        var weightMap: [String: String] = [:]
        for (i, name) in saved.names.enumerated() {
            let t = try saved.tensor(name)
            entries[i % 2].append(TorchCheckpointWriter.Entry(names: [name], shape: t.shape) { t.data })
            weightMap[name] = "pytorch_model-0000\(i % 2 + 1)-of-00002.bin"
        }
        for s in 0..<2 { try TorchCheckpointWriter.write(entries[s], to: dir + "/pytorch_model-0000\(s + 1)-of-00002.bin") }
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
            .write(to: URL(fileURLWithPath: dir + "/pytorch_model.bin.index.json"))
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        let back = try BertRetriever.load(folder: dir)
        #expect(Array(back.params.buffer) == Array(f.model.params.buffer))
        #expect(back.pooler == f.model.pooler && back.pooler.count == 2)
        let start = try BertRetriever.load(folder: dir, config: f.model.config, seed: 1)
        #expect(Array(start.params.buffer) == Array(f.model.params.buffer))
    }

    @Test func anotherArchitectureIsRefusedByField() throws {
        let dir = try copyFixture("proj_mean")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try editConfig(dir) { $0["model_type"] = "t5" }
        let e = loadError(dir)
        #expect(e.contains("model_type") && e.contains("'t5'") && e.contains("config.json"), "\(e)")
        try editConfig(dir) { $0["model_type"] = "bert"; $0["architectures"] = ["RobertaModel"] }
        let e2 = loadError(dir)
        #expect(e2.contains("architectures") && e2.contains("RobertaModel"), "\(e2)")
        try editConfig(dir) { $0["architectures"] = ["Retriever"]; $0["hidden_act"] = "swish" }
        let e3 = loadError(dir)
        #expect(e3.contains("hidden_act") && e3.contains("swish"), "\(e3)")
        // A size no model has: refused before the allocator aborts; a number that is no Int names its field.
        try editConfig(dir) { $0["hidden_act"] = "gelu"; $0["vocab_size"] = 10_000_000_000 }
        let e5 = loadError(dir)
        #expect(e5.contains("field vocab_size is 10000000000, expected at most 16777216"), "\(e5)")
        try editConfig(dir) { $0["vocab_size"] = 100; $0["hidden_size"] = 16.5 }
        let e6 = loadError(dir)
        #expect(e6.contains("field hidden_size is 16.5") && e6.contains("whole number"), "\(e6)")
        // A vocab or tokenizer JSON given as the config: refused, not read as bert-base's defaults.
        try editConfig(dir) { $0 = ["version": "1.0", "model": ["type": "WordPiece"]] }
        let e4 = loadError(dir)
        #expect(e4.contains("not a BERT config.json") && e4.contains("model_type, architectures, hidden_size"), "\(e4)")
    }

    /// config.json says 12 but proj.weight is (8, 16): the error names the tensor, the file and both shapes.
    @Test func projectionSizeMismatchNamesTensorAndShapes() throws {
        let dir = try copyFixture("proj_mean")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try editConfig(dir) { $0["indexing_dimension"] = 12 }
        let e = loadError(dir)
        #expect(e.contains("proj.weight") && e.contains("[12, 16]") && e.contains("[8, 16]") && e.contains("model.safetensors"), "\(e)")
        // Projection switched on for weights that have none: the missing tensor is named.
        let dir2 = try copyFixture("noproj_cls")
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        try editConfig(dir2) { $0["projection"] = true; $0["indexing_dimension"] = 8 }
        let e2 = loadError(dir2)
        #expect(e2.contains("proj.weight") && e2.contains("pytorch_model.bin"), "\(e2)")
    }

    @Test func missingWeightIsNamed() throws {
        let f = try BertFixture("proj_mean")
        let dir = try scratchFolder("missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try f.model.save(folder: dir)
        var map = try SafeTensors.read(dir + "/model.safetensors")
        var kept = TensorMap(source: "x")
        for (n, t) in map where n != "model.encoder.layer.1.intermediate.dense.bias" { kept.append(n, t) }
        map = kept
        try SafeTensors.write(map, to: dir + "/model.safetensors", metadata: ["format": "pt"])
        let e = loadError(dir)
        #expect(e.contains("encoder.layer.1.intermediate.dense.bias") && e.contains("model.safetensors"), "\(e)")
    }

    @Test func noProjectionNeedsTheHiddenWidth() throws {
        let dir = try copyFixture("noproj_cls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try editConfig(dir) { $0["indexing_dimension"] = 768 }
        let e = loadError(dir)
        #expect(e.contains("indexing_dimension") && e.contains("768") && e.contains("hidden_size"), "\(e)")
    }

    @Test func aFolderWithoutTokenizerNeedsTheParam() throws {
        let dir = try copyFixture("proj_mean")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ModelLoadError.self) { try RetrieverModel.load(folder: dir) }
        do {
            _ = try RetrieverModel.load(folder: dir)
        } catch {
            #expect("\(error)".contains("tokenizer") && "\(error)".contains(dir))
        }
    }

    /// A plain BERT config (no retriever fields) reads as FiD's released retrievers are used.
    @Test func plainBertConfigMeansMaskedMeanWithoutProjection() throws {
        let dir = try scratchFolder("plain")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try JSONSerialization.data(withJSONObject: ["model_type": "bert", "hidden_size": 32, "num_attention_heads": 4]).write(
            to: URL(fileURLWithPath: dir + "/config.json"))
        let c = try BertConfig.load(path: dir + "/config.json")
        #expect(!c.projection && c.applyPassageMask && c.applyQuestionMask && !c.extractCLS && c.embeddingWidth == 32)
    }
}
