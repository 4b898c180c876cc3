// T5Loader: a Hugging Face (or FiD) T5 folder → T5Model: config.json plus model.safetensors,
// sharded safetensors with their index, each tensor converted straight into the slab.
import Foundation
import Tensor

extension T5Model {
    /// Loads `folder/config.json` and the weights next to it.
    ///
    /// Weight files, in order of preference: `model.safetensors`; `model.safetensors.index.json`
    /// with its shards; `pytorch_model.bin` (read by `TorchCheckpoint`'s safe pickle reader, which
    /// runs no code; F16/BF16 become F32). FiD's saved names (`encoder.encoder.block.N.module.…`) are read as the
    /// plain Hugging Face names. A checkpoint with transformers 3.0.2's cross-attention bias gets
    /// it applied unless `crossAttentionBias` is false.
    ///
    /// - Throws: `ModelLoadError` for a missing or malformed config or weight index;
    ///   `TensorMapError` naming a missing tensor (and the file searched) or a wrong shape (tensor,
    ///   file, both shapes); `SafeTensorsError` for a damaged file.
    public static func load(folder: String, crossAttentionBias: Bool = true) throws -> T5Model {
        let config = try T5Config.load(path: folder + "/config.json")
        if let map = try torchWeights(folder: folder, normalize: normalizedName) {
            let hasBias = map.contains(crossBiasName)
            let model = T5Model(config: config, crossAttentionBias: hasBias)
            model.useCrossAttentionBias = hasBias && crossAttentionBias
            try model.params.load(from: map)
            return model
        }
        let files = try weightFiles(folder: folder)
        // Every stored name (normalised from FiD's layout) → the file holding it.
        var located: [String: (file: SafeTensorsFile, name: String)] = [:]
        for file in files {
            for name in file.names { located[normalizedName(name)] = (file, name) }
        }
        let hasBias = located[crossBiasName] != nil
        let model = T5Model(config: config, crossAttentionBias: hasBias)
        model.useCrossAttentionBias = hasBias && crossAttentionBias
        let source = files.count == 1 ? files[0].path : folder + "/model.safetensors.index.json (\(files.count) shards)"
        do {
            try model.params.load(missingSource: source) { names in
                names.lazy.compactMap { located[$0] }.first
            }
        } catch TensorMapError.missing(let name, let src, _) {
            throw TensorMapError.missing(name: name, source: src, close: TensorMap.closeNames(to: name, among: Array(located.keys)))
        }
        return model
    }

    /// FiD saves its encoder as `encoder.encoder.block.N.module.…`; Hugging Face names it `encoder.block.N.…`.
    static func normalizedName(_ name: String) -> String {
        var n = name
        if n.hasPrefix("encoder.encoder.") { n.removeFirst("encoder.".count) }
        return n.replacingOccurrences(of: ".module.", with: ".")
    }

    /// The weight files a folder may hold, in order of preference (safetensors first, as
    /// transformers reads them).
    public static let weightFileNames = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]

    /// The safetensors files of a model folder.
    static func weightFiles(folder: String) throws -> [SafeTensorsFile] {
        let fm = FileManager.default
        let single = folder + "/model.safetensors"
        if fm.fileExists(atPath: single) { return [try SafeTensorsFile(path: single)] }
        let indexPath = folder + "/model.safetensors.index.json"
        if fm.fileExists(atPath: indexPath) { return try shardPaths(index: indexPath, folder: folder).map { try SafeTensorsFile(path: $0) } }
        throw ModelLoadError(path: folder, "holds no " + weightFileNames.joined(separator: ", "),
                             hint: "a Hugging Face model folder as save_pretrained writes it")
    }

    /// The shard files a `save_pretrained` weight index names (each once, in the folder).
    static func shardPaths(index indexPath: String, folder: String) throws -> [String] {
        let json = try ModelFolder.readJSONObject(indexPath, what: "weight index", hint: "the index save_pretrained writes for sharded weights").object
        guard let map = json["weight_map"] as? [String: String], !map.isEmpty else {
            throw ModelLoadError(path: indexPath, "has no 'weight_map' object of tensor name → shard file")
        }
        return try Set(map.values).sorted().map { name in
            guard !name.contains("/"), !name.hasPrefix(".") else {
                throw ModelLoadError(path: indexPath, "weight_map names shard '\(name)', expected a file in the same folder")
            }
            let path = folder + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                throw ModelLoadError(path: indexPath, "weight_map names shard '\(name)', which is missing from \(folder)")
            }
            return path
        }
    }

    /// A folder's PyTorch weights when it has no safetensors: `pytorch_model.bin`, or the shards
    /// `pytorch_model.bin.index.json` names (`save_pretrained(safe_serialization=False)` of a large
    /// model), read by the safe pickle reader, every tensor under its `normalize`d name (the first
    /// of a name kept). Nil when the folder has safetensors or no PyTorch weights.
    static func torchWeights(folder: String, normalize: (String) -> String) throws -> TensorMap? {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder + "/model.safetensors") || fm.fileExists(atPath: folder + "/model.safetensors.index.json") { return nil }
        let single = folder + "/pytorch_model.bin", indexPath = folder + "/pytorch_model.bin.index.json"
        let paths: [String]
        if fm.fileExists(atPath: single) {
            paths = [single]
        } else if fm.fileExists(atPath: indexPath) {
            paths = try shardPaths(index: indexPath, folder: folder)
        } else {
            return nil
        }
        var map = TensorMap(source: paths.count == 1 ? paths[0] : indexPath + " (\(paths.count) shards)")
        for path in paths {
            for (name, tensor) in try TorchCheckpoint.read(path: path) where !map.contains(normalize(name)) { map.append(normalize(name), tensor) }
        }
        return map
    }
}
