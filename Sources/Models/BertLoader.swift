// BertLoader: a BERT or FiD retriever folder → BertRetriever (config.json plus model.safetensors,
// sharded safetensors, or pytorch_model.bin through the safe pickle reader), and back to a folder
// that FiD's `Retriever` and, without a projection, transformers' `BertModel` load.
import Foundation
import Tensor

extension BertRetriever {
    /// Loads `folder/config.json` and the weights next to it.
    ///
    /// Stored names may carry FiD's `model.` prefix or `bert.` (BertForMaskedLM and kin) or none
    /// (BertModel, MiniLM); old TensorFlow-converted checkpoints' `LayerNorm.gamma`/`beta` read as
    /// `weight`/`bias`. Heads other than FiD's projection (`cls.*`) and `embeddings.position_ids`
    /// are ignored; the pooler is kept for saving.
    ///
    /// - Throws: `ModelLoadError` for a missing or malformed config (another architecture names its
    ///   field); `TensorMapError` naming a missing tensor (and the file searched, with close names)
    ///   or a wrong shape (tensor, file, both shapes: e.g. a projection of another
    ///   `indexing_dimension`); `SafeTensorsError` for a damaged file.
    public static func load(folder: String) throws -> BertRetriever {
        try load(folder: folder, as: BertConfig.load(path: folder + "/config.json"))
    }

    /// Loads `folder`'s weights into a model of `config`.
    static func load(folder: String, as config: BertConfig) throws -> BertRetriever {
        let model = BertRetriever(config: config)
        if let map = try T5Model.torchWeights(folder: folder, normalize: normalizedName) {
            try model.params.load(from: map)
            model.pooler = TensorMap(poolerNames.compactMap { n in map[n].map { (n, $0) } }, source: map.source)
            return model
        }
        let files = try T5Model.weightFiles(folder: folder)
        var located: [String: (file: SafeTensorsFile, name: String)] = [:]
        for file in files {
            for name in file.names where located[normalizedName(name)] == nil { located[normalizedName(name)] = (file, name) }
        }
        let source = files.count == 1 ? files[0].path : folder + "/model.safetensors.index.json (\(files.count) shards)"
        do {
            try model.params.load(missingSource: source) { names in names.lazy.compactMap { located[$0] }.first }
        } catch TensorMapError.missing(let name, let src, _) {
            throw TensorMapError.missing(name: name, source: src, close: TensorMap.closeNames(to: name, among: Array(located.keys)))
        }
        var pooler = TensorMap(source: source)
        for n in poolerNames {
            if let (file, name) = located[n] { pooler.append(n, try file.tensor(name)) }
        }
        model.pooler = pooler
        return model
    }

    /// Loads the weights of `folder` into a model of `config` (the folder's BERT fields with
    /// another head, as `train_retriever`'s params ask): when `config` has a projection and the
    /// folder has none (`proj.weight` absent), the projection is initialised fresh from `seed`;
    /// a folder projection of another size is refused naming the tensor and both shapes.
    public static func load(folder: String, config: BertConfig, seed: UInt64) throws -> BertRetriever {
        let saved = try BertConfig.load(path: folder + "/config.json")
        for (field, a, b) in [("hidden_size", saved.hiddenSize, config.hiddenSize), ("num_hidden_layers", saved.numHiddenLayers, config.numHiddenLayers),
                              ("vocab_size", saved.vocabSize, config.vocabSize), ("intermediate_size", saved.intermediateSize, config.intermediateSize)]
        where a != b {
            preconditionFailure("BertRetriever.load(folder:config:): \(field) \(b) differs from the folder's \(a)")
        }
        let names: Set<String>
        if let map = try T5Model.torchWeights(folder: folder, normalize: normalizedName) {
            names = Set(map.names)
        } else {
            names = Set(try T5Model.weightFiles(folder: folder).flatMap { $0.names.map(normalizedName) })
        }
        let fresh = config.projection && !names.contains("proj.weight")
        // Read the folder as a model without the head when the projection is new, then copy.
        var bodyConfig = config
        if fresh {
            bodyConfig.projection = false
            bodyConfig.indexingDimension = bodyConfig.hiddenSize
        }
        let body = try load(folder: folder, as: bodyConfig)
        if !fresh && !config.projection { return body }
        if !fresh { return try load(folder: folder, as: config) }
        let model = BertRetriever(config: config)
        model.initialize(seed: seed)
        for e in body.layout.entries { model.params[e.name].update(from: body.params[e.name], count: e.count) }
        model.pooler = body.pooler
        return model
    }

    static let poolerNames = ["pooler.dense.weight", "pooler.dense.bias"]

    /// A stored name as the layout names it: FiD's `model.` and `bert.` prefixes dropped, TF-era
    /// `gamma`/`beta` as `weight`/`bias`.
    static func normalizedName(_ name: String) -> String {
        var n = name
        for prefix in ["model.", "bert."] where n.hasPrefix(prefix) {
            n.removeFirst(prefix.count)
            break
        }
        if n.hasSuffix("LayerNorm.gamma") { n = String(n.dropLast("gamma".count)) + "weight" }
        if n.hasSuffix("LayerNorm.beta") { n = String(n.dropLast("beta".count)) + "bias" }
        return n
    }

    /// Writes `folder/config.json` and `folder/model.safetensors` (each to a temporary name, then
    /// renamed), and copies `tokenizer` (a vocab.txt or tokenizer.json, with the
    /// tokenizer_config.json beside it when there is one) when given.
    ///
    /// The weights are stored as FiD's `Retriever.save_pretrained` names them (`model.` + BertModel
    /// names, `proj.*`, `norm.*`), so FiD's `Retriever.from_pretrained` loads them. Without a
    /// projection they are stored a second time without the prefix, so transformers'
    /// `BertModel.from_pretrained` loads the same folder (as Pyserini loads FiD's released
    /// retrievers); each loader ignores the other's copy.
    public func save(folder: String, tokenizer: String? = nil) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var map = TensorMap(source: folder + "/model.safetensors")
        for e in layout.entries {
            let t = params.tensor(e.name)
            let fid = e.name.hasPrefix("proj.") || e.name.hasPrefix("norm.") ? e.name : "model." + e.name
            map.append(fid, t)
            if !config.projection { map.append(e.name, t) }
        }
        for (name, t) in pooler {
            map.append("model." + name, t)
            if !config.projection { map.append(name, t) }
        }
        try SafeTensors.write(map, to: folder + "/model.safetensors", metadata: ["format": "pt"])
        let json = config.jsonObject(architecture: config.projection ? "Retriever" : "BertModel")
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: folder + "/config.json"), options: .atomic)
        if let tokenizer {
            let src = URL(fileURLWithPath: tokenizer)
            var copies = [src]
            let cfg = src.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
            if fm.fileExists(atPath: cfg.path) { copies.append(cfg) }
            for file in copies {
                let dst = URL(fileURLWithPath: folder).appendingPathComponent(file.lastPathComponent)
                if dst.standardizedFileURL == file.standardizedFileURL { continue }
                try fm.contents(atPath: file.path).map { try $0.write(to: dst, options: .atomic) }
            }
        }
    }
}
