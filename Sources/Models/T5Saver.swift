// T5Saver: a T5Model written as a Hugging Face folder (config.json, model.safetensors, tokenizer
// file) that transformers' T5ForConditionalGeneration.from_pretrained and T5Model.load both read.
import Foundation
import Tensor
import Tokenizers

extension T5Config {
    /// The `config.json` object `save_pretrained` writes for this config (transformers 4.x names),
    /// with `architectures` = `T5ForConditionalGeneration`.
    ///
    /// Floats are written by their shortest decimal form (`0.1`, not `0.10000000149`), so the
    /// file reads as Python wrote it; `tie_word_embeddings` is always written, even at its default.
    public func huggingFaceJSON() -> [String: Any] {
        func decimal(_ f: Float) -> Double { Double("\(f)") ?? Double(f) }
        let gated = feedForwardProj == .gatedGELU
        var o: [String: Any] = [
            "architectures": ["T5ForConditionalGeneration"],
            "model_type": "t5",
            "vocab_size": vocabSize, "d_model": dModel, "d_kv": dKV, "d_ff": dFF,
            "num_layers": numLayers, "num_decoder_layers": decoderLayers, "num_heads": numHeads,
            "relative_attention_num_buckets": relativeAttentionNumBuckets,
            "relative_attention_max_distance": relativeAttentionMaxDistance,
            "dropout_rate": decimal(dropoutRate), "layer_norm_epsilon": decimal(layerNormEpsilon),
            "initializer_factor": 1.0,
            "feed_forward_proj": feedForwardProj.rawValue,
            "dense_act_fn": gated ? "gelu_new" : "relu", "is_gated_act": gated,
            "tie_word_embeddings": tieWordEmbeddings,
            "is_encoder_decoder": true, "use_cache": true,
            "pad_token_id": padTokenId, "eos_token_id": eosTokenId, "decoder_start_token_id": decoderStartTokenId,
            "torch_dtype": "float32",
        ]
        if let s = scaleDecoderOutputs { o["scale_decoder_outputs"] = s }
        return o
    }
}

/// Writes T5 models as Hugging Face folders.
public enum T5Saver {
    /// The weights file name transformers looks for first.
    public static let weightsFile = "model.safetensors"

    /// Writes `config.json`, `model.safetensors` and (when given) the tokenizer file into the
    /// existing folder `dir`, each file under a temporary name and renamed.
    ///
    /// Tensors are stored once under their canonical Hugging Face names (`shared.weight` for the
    /// tied embeddings and, with `tie_word_embeddings`, `lm_head.weight`), as `save_pretrained`
    /// stores tied weights; transformers re-ties the aliases on load. A transformers 3.0.2
    /// cross-attention bias the model carries is written too (transformers 4 ignores it, fidq reads it).
    ///
    /// - Parameters:
    ///   - tokenizer: a `tokenizer.json` or SentencePiece `.model` to copy in as `tokenizer.json`
    ///     or `spiece.model`, so the folder is self-contained for `T5Reader.load`.
    /// - Throws: file errors naming the path.
    public static func write(_ model: T5Model, into dir: String, tokenizer: String? = nil) throws {
        let config = try JSONSerialization.data(
            withJSONObject: model.config.huggingFaceJSON(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try writeAtomically(config + Data("\n".utf8), to: dir + "/config.json")
        try model.params.save(to: dir + "/" + weightsFile, metadata: ["format": "pt"])
        if let tokenizer {
            let name = tokenizer.hasSuffix(".json") ? "tokenizer.json" : "spiece.model"
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: tokenizer)) } catch {
                throw ModelLoadError(path: tokenizer, "cannot read the tokenizer to copy into \(dir) (\(error.localizedDescription))")
            }
            try writeAtomically(data, to: dir + "/" + name)
            if let config = tokenizerConfig(for: tokenizer) { try writeAtomically(config, to: dir + "/tokenizer_config.json") }
        }
    }

    /// The `tokenizer_config.json` transformers needs beside a `tokenizer.json` whose vocabulary has
    /// no `<extra_id_N>` sentinels (the example world's): without it, `AutoTokenizer` /
    /// `T5TokenizerFast` add T5's 100 sentinels past the model's rows (an IndexError at the
    /// embedding) and name no pad token. Nil for a T5 vocabulary that has them, which loads right
    /// as it is, for a SentencePiece model, and for one that cannot be read.
    public static func tokenizerConfig(for tokenizerPath: String) -> Data? {
        guard tokenizerPath.hasSuffix(".json"), let t = try? TokenizerLoader.load(tokenizerPath) else { return nil }
        return tokenizerConfig(hasPiece: { t.id(for: $0) != nil })
    }

    /// `tokenizerConfig(for:)` of a vocabulary given by membership.
    public static func tokenizerConfig(hasPiece: (String) -> Bool) -> Data? {
        guard !hasPiece("<extra_id_0>") else { return nil }
        var o: [String: Any] = ["tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 512]
        for (key, piece) in [("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>")] where hasPiece(piece) { o[key] = piece }
        return try? JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) + Data("\n".utf8)
    }

    /// Writes a complete folder at `folder`: staged in a sibling temporary folder, then renamed
    /// into place, so no half-written model folder is ever visible.
    ///
    /// - Parameter replace: remove an existing `folder` first; otherwise an existing one is an error.
    /// - Throws: `ModelLoadError` when `folder` exists and `replace` is false; file errors.
    public static func save(_ model: T5Model, to folder: String, tokenizer: String? = nil, replace: Bool = false) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder) && !replace {
            throw ModelLoadError(path: folder, "already exists", hint: "choose a new folder, or pass replace")
        }
        let url = URL(fileURLWithPath: folder)
        let staged = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp").path
        try fm.createDirectory(atPath: staged, withIntermediateDirectories: false)
        do {
            try write(model, into: staged, tokenizer: tokenizer)
            if fm.fileExists(atPath: folder) { try fm.removeItem(atPath: folder) }
            try fm.moveItem(atPath: staged, toPath: folder)
        } catch {
            try? fm.removeItem(atPath: staged)
            throw error
        }
    }

    /// `data` to `path` by a temporary name in the same folder, then rename.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = path + ".\(getpid()).tmp"
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
            if rename(tmp, path) != 0 { throw ModelLoadError(path: path, "cannot rename \(tmp) into place (errno \(errno))") }
        } catch let e as ModelLoadError {
            unlink(tmp)
            throw e
        } catch {
            unlink(tmp)
            throw ModelLoadError(path: path, "cannot write (\(error.localizedDescription))")
        }
    }
}
