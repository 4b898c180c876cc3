// T5ConfigTests: config.json parsing with Hugging Face names and defaults, refusals naming the
// field, and the parameter layout's names and ties.
import Foundation
import Testing
@testable import Models
import Tensor

func scratchFolder() -> String {
    let d = NSTemporaryDirectory() + "t5cfg-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

struct T5ConfigTests {
    @Test func readsHuggingFaceNamesAndDefaults() throws {
        let dir = scratchFolder()
        let json = #"""
            {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 16, "d_kv": 4, "d_ff": 24,
             "num_layers": 2, "num_heads": 4, "vocab_size": 48, "feed_forward_proj": "gated-gelu",
             "tie_word_embeddings": false, "some_new_field": [1, 2]}
            """#
        try json.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let c = try T5Config.load(path: dir + "/config.json")
        #expect(c.dModel == 16 && c.dKV == 4 && c.dFF == 24 && c.numHeads == 4 && c.vocabSize == 48)
        #expect(c.decoderLayers == 2)  // num_decoder_layers defaults to num_layers
        #expect(c.relativeAttentionNumBuckets == 32 && c.relativeAttentionMaxDistance == 128)
        #expect(c.feedForwardProj == .gatedGELU && !c.tieWordEmbeddings && !c.scalesDecoderOutput)
        #expect(c.layerNormEpsilon == 1e-6 && c.dropoutRate == 0.1 && c.decoderStartTokenId == 0 && c.eosTokenId == 1)
    }

    @Test func refusalsNameTheFileAndField() throws {
        let dir = scratchFolder()
        func fails(_ json: String, mentioning words: [String]) {
            try! json.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
            do {
                _ = try T5Config.load(path: dir + "/config.json")
                Issue.record("accepted \(json)")
            } catch {
                let text = "\(error)"
                #expect(text.contains(dir + "/config.json"), "\(text)")
                for w in words { #expect(text.contains(w), "\(text) lacks \(w)") }
            }
        }
        fails(#"{"model_type": "t5", "feed_forward_proj": "gated-silu"}"#, mentioning: ["feed_forward_proj", "gated-silu", "supports"])
        fails(#"{"model_type": "bert"}"#, mentioning: ["model_type", "bert"])
        fails(#"{"architectures": ["BertModel"]}"#, mentioning: ["architectures", "BertModel"])
        fails(#"{"d_model": "wide"}"#, mentioning: ["d_model"])
        fails(#"{"model_type": "t5", "num_heads": 0}"#, mentioning: ["num_heads"])
        // Every field has a default: a tokenizer.json given as the config must not become t5-small.
        fails(#"{"version": "1.0", "truncation": null, "model": {"type": "WordLevel"}}"#,
              mentioning: ["not a T5 config.json", "model_type, architectures, d_model", "model, truncation, version"])
        // Sizes no model has are refused before anything is allocated (1e9 aborted in the
        // allocator, 1e18 overflowed Int); a number that is no Int names its field.
        fails(#"{"model_type": "t5", "vocab_size": 1000000000}"#, mentioning: ["vocab_size", "1000000000", "at most 16777216"])
        fails(#"{"model_type": "t5", "d_kv": 100000000000000000}"#, mentioning: ["d_kv", "at most"])
        fails(#"{"model_type": "t5", "num_layers": 1000000000}"#, mentioning: ["num_layers", "at most 4096"])
        fails(#"{"model_type": "t5", "d_model": 32.5}"#, mentioning: ["field d_model is 32.5", "whole number"])
        fails(#"{"model_type": "t5", "d_model": 1e30}"#, mentioning: ["field d_model", "whole number"])
        // At or below the decoder's exact range the log spacing divides by log(1) (a trap) or
        // goes negative (a read before the bias table).
        fails(#"{"model_type": "t5", "relative_attention_max_distance": 16}"#,
              mentioning: ["relative_attention_max_distance is 16", "more than relative_attention_num_buckets / 2 (16)"])
        fails(#"{"d_model": 16,"#, mentioning: ["is not valid JSON ("])
        fails(#"[{"d_model": 16}]"#, mentioning: ["is a JSON list, not an object"])
        // Missing, under a file (a checkpoint's `latest` taken for a folder), a folder: each said
        // in words, not as Foundation's "The operation could not be completed".
        try "step-3\n".write(toFile: dir + "/latest", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/folder/config.json", withIntermediateDirectories: true)
        for (path, words) in [("/nothing/config.json", "no such file"), ("/latest/config.json", dir + "/latest is a file, not a folder"),
                              ("/folder/config.json", "it is a folder")] {
            do {
                _ = try T5Config.load(path: dir + path)
                Issue.record("read \(path)")
            } catch {
                #expect("\(error)".contains(dir + path) && "\(error)".contains(words) && !"\(error)".contains("could not be completed"), "\(error)")
            }
        }
    }

    /// t5-small's sizes need 242 MB of float32: refused where less may be used, naming both.
    @Test func parametersBeyondTheMemoryAreRefused() throws {
        let c = try JSONDecoder().decode(T5Config.self, from: Data(#"{"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8, "d_kv": 64}"#.utf8))
        try c.validate(path: "small/config.json", available: 1 << 30)
        do {
            try c.validate(path: "small/config.json", available: 100_000_000)
            Issue.record("t5-small's parameters accepted in 100 MB")
        } catch {
            #expect("\(error)".contains("small/config.json") && "\(error)".contains("parameters (0.2 GB of float32), more than the 0.1 GB"), "\(error)")
        }
    }

    @Test func layoutNamesEveryParameterOnce() {
        var c = T5Config(vocabSize: 48, dModel: 16, dKV: 4, dFF: 24, numLayers: 2, numHeads: 4, numBuckets: 8, maxDistance: 20)
        let tied = c.layout()
        #expect(tied.entry("lm_head.weight") == tied.entry("shared.weight"))
        #expect(tied.entry("encoder.embed_tokens.weight") == tied.entry("shared.weight"))
        #expect(tied.entry("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight") == nil)
        #expect(tied.entry("decoder.block.1.layer.2.DenseReluDense.wi.weight")?.shape == [24, 16])
        // Tied v1.0: 48·16 + per encoder block (4·16·16 + 16 + 24·16 + 16·24 + 16) + …
        let enc = 2 * (4 * 256 + 16 + 2 * 384 + 16) + 8 * 4 + 16
        let dec = 2 * (8 * 256 + 2 * 16 + 2 * 384 + 16) + 8 * 4 + 16
        #expect(tied.count == 48 * 16 + enc + dec)
        c.feedForwardProj = .gatedGELU
        c.tieWordEmbeddings = false
        let untied = c.layout(crossAttentionBias: true)
        #expect(untied.entry("lm_head.weight")?.offset != untied.entry("shared.weight")?.offset)
        #expect(untied.entry("encoder.block.0.layer.1.DenseReluDense.wi_1.weight")?.shape == [24, 16])
        #expect(untied.contains("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"))
    }
}
