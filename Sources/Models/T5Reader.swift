// T5Reader: a T5 model folder loaded together with the tokenizer whose ids it reads, checked
// against each other, so the reader jobs cannot pair a model with a vocabulary it does not fit.
import Foundation
import Tokenizers

/// A T5 model and its tokenizer.
///
/// The tokenizer is the `tokenizer` argument when given (a `tokenizer.json`, a SentencePiece
/// `.model`, or a folder holding one), else the model folder's own `tokenizer.json` or
/// `spiece.model`. FiD's released readers ship no tokenizer files (they use `t5-base`'s), so
/// loading one needs the argument.
public struct T5Reader {
    public let model: T5Model
    /// Immutable: one instance serves every thread (each with its own `Workspace`).
    public let tokenizer: any Tokenizer
    /// The tokenizer file actually read.
    public let tokenizerPath: String

    /// The tokenizer files looked for in a model folder, in order.
    public static let tokenizerFiles = ["tokenizer.json", "spiece.model"]

    /// Loads `folder` as `T5Model.load(folder:crossAttentionBias:)` does, and its tokenizer.
    ///
    /// - Throws: `ModelLoadError` naming the folder when it holds no tokenizer and none is given,
    ///   naming the given path when it holds none, or naming the tokenizer file when its ids do
    ///   not fit the model (an id ≥ `vocab_size`, or `<pad>`/`</s>` ids that differ from
    ///   `config.json`'s); `TokenizerError` for a damaged tokenizer file; the model's load errors.
    public static func load(folder: String, tokenizer: String? = nil, crossAttentionBias: Bool = true) throws -> T5Reader {
        // The config, then the tokenizer, then the weights: each is quicker to read than the
        // next, and a folder of another model (a BERT retriever, say) is named as such rather
        // than as one lacking a T5 tokenizer.
        let config = try T5Config.load(path: folder + "/config.json")
        let path = try tokenizerFile(folder: folder, tokenizer: tokenizer)
        let tok = try TokenizerLoader.load(path)
        try check(tok, path: path, config: config, configPath: folder + "/config.json")
        let model = try T5Model.load(folder: folder, crossAttentionBias: crossAttentionBias)
        return T5Reader(model: model, tokenizer: tok, tokenizerPath: path)
    }

    /// The tokenizer file to read: `tokenizer` (a file, or a folder searched for `tokenizerFiles`)
    /// when given, else the first of `tokenizerFiles` in `folder`.
    public static func tokenizerFile(folder: String, tokenizer: String?) throws -> String {
        try ModelFolder.tokenizerFile(folder: folder, tokenizer: tokenizer, files: tokenizerFiles, reference: "t5-base's")
    }

    /// Refuses a tokenizer whose ids the model cannot read, or whose padding and end-of-sequence
    /// ids are not the model's (the targets would never end where the model learned to stop).
    public static func check(_ tok: any Tokenizer, path: String, config: T5Config, configPath: String) throws {
        // T5's 32,100 pieces against 32,128 embedding rows is normal: only ids ≥ vocab_size are unreadable.
        guard tok.vocabSize <= config.vocabSize else {
            throw ModelLoadError(
                path: path, "has \(tok.vocabSize) ids but \(configPath) has vocab_size \(config.vocabSize): ids must be < vocab_size",
                hint: "use the tokenizer the model was trained with (T5's 32,100 pieces fit its 32,128 rows)")
        }
        guard Int(tok.padId) == config.padTokenId else {
            throw ModelLoadError(
                path: path, "pads with id \(tok.padId) but \(configPath) has pad_token_id \(config.padTokenId)",
                hint: "use the tokenizer the model was trained with")
        }
        guard tok.suffixIds == [Int32(config.eosTokenId)] else {
            throw ModelLoadError(
                path: path, "ends a text with ids \(tok.suffixIds), expected [\(config.eosTokenId)] (\(configPath)'s eos_token_id)",
                hint: "a T5 tokenizer appends </s>; use the tokenizer the model was trained with")
        }
    }
}
