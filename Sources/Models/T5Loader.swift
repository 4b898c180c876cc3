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
        let fm = FileManager.default
        let bin = folder + "/pytorch_model.bin"
        if !fm.fileExists(atPath: folder + "/model.safetensors") && !fm.fileExists(atPath: folder + "/model.safetensors.index.json")
            && fm.fileExists(atPath: bin)
        {
            let raw = try TorchCheckpoint.read(path: bin)
            var map = TensorMap(source: bin)
            for (name, tensor) in raw where !map.contains(normalizedName(name)) { map.append(normalizedName(name), tensor) }
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

    /// The safetensors files of a model folder.
    static func weightFiles(folder: String) throws -> [SafeTensorsFile] {
        let fm = FileManager.default
        let single = folder + "/model.safetensors"
        if fm.fileExists(atPath: single) { return [try SafeTensorsFile(path: single)] }
        let indexPath = folder + "/model.safetensors.index.json"
        if fm.fileExists(atPath: indexPath) {
            let json = try ModelFolder.readJSONObject(indexPath, what: "weight index", hint: "the index save_pretrained writes for sharded weights").object
            guard let map = json["weight_map"] as? [String: String], !map.isEmpty else {
                throw ModelLoadError(path: indexPath, "has no 'weight_map' object of tensor name → shard file")
            }
            var shards: [SafeTensorsFile] = []
            for name in Set(map.values).sorted() {
                guard !name.contains("/"), !name.hasPrefix(".") else {
                    throw ModelLoadError(path: indexPath, "weight_map names shard '\(name)', expected a file in the same folder")
                }
                let path = folder + "/" + name
                guard fm.fileExists(atPath: path) else {
                    throw ModelLoadError(path: indexPath, "weight_map names shard '\(name)', which is missing from \(folder)")
                }
                shards.append(try SafeTensorsFile(path: path))
            }
            return shards
        }
        throw ModelLoadError(path: folder, "holds no model.safetensors, model.safetensors.index.json or pytorch_model.bin",
                             hint: "a Hugging Face model folder as save_pretrained writes it")
    }
}
