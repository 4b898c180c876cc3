// ExampleWorldFiles: the example world's files — DPR TSV, FiD JSON, the demo's small model configs.
import Formats
import Foundation
import Models

extension ExampleWorld {
    /// What `write` puts in a folder (names relative to it), and a summary for `result.json`.
    public struct Summary: Codable, Sendable, Equatable {
        public var passages: Int
        public var train: Int
        public var dev: Int
        public var people: Int
        /// The reader's chance baseline on dev (see `chanceExactMatch`).
        public var chanceExactMatch: Double
        public var files: [String]

        enum CodingKeys: String, CodingKey {
            case passages, train, dev, people, files
            case chanceExactMatch = "chance_exact_match"
        }
    }

    /// Every file `write` makes, in order.
    public static let fileNames = [
        "passages.tsv", "train.json", "dev.json", "train_gold.json", "dev_gold.json",
        "train_scored.json", "dev_scored.json", "train_exercises.json", "dev_exercises.json", "reader/config.json", "reader/tokenizer.json", "reader/tokenizer_config.json", "retriever/config.json",
        "retriever/vocab.txt", "world.json",
    ]

    /// The world's files as (name, bytes), in `fileNames` order:
    /// - `passages.tsv`: DPR's `id\ttext\ttitle` with a header, quoted as Python's `csv` writes.
    /// - `train.json`, `dev.json`: FiD examples with `ctxs: []` (for `retrieve` to fill).
    /// - `train_gold.json`, `dev_gold.json`: the gold among look-alikes, shuffled (`Contexts.gold`).
    /// - `train_scored.json`, `dev_scored.json`: the same with reader-like scores (`Contexts.scored`).
    /// - `train_exercises.json`, `dev_exercises.json`: `exercises` and (when that is above 0) `dev`
    ///   reading exercises of fresh facts (`ExampleExercises.swift`).
    /// - `reader/config.json`, `reader/tokenizer.json`: a small T5 (d 128, 2+2 layers) over the
    ///   world's own word-level vocabulary (`ExampleWorldTokenizers.swift`).
    /// - `retriever/config.json`, `retriever/vocab.txt`: a small BERT (d 64, 2 layers) over the
    ///   same words, uncased.
    /// - `world.json`: the config and the `Summary`.
    public func files() throws -> [(name: String, data: Data)] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        func json<T: Encodable>(_ value: T) throws -> Data {
            var data = try encoder.encode(value)
            data.append(10)
            return data
        }
        // FiD data as Python's `json.dump(data, f, indent=4)` writes it.
        func fid(_ questions: [Question], _ contexts: Contexts) -> Data { fidData(examples(questions, contexts)) }
        func fidData(_ examples: [FiDExample]) -> Data {
            var bytes: [UInt8] = []
            PyJSON.appendIndented(.array(examples.map(\.raw)), to: &bytes)
            bytes.append(10)
            return Data(bytes)
        }
        var out: [(String, Data)] = [("passages.tsv", tsv())]
        out.append(("train.json", fid(train, .empty)))
        out.append(("dev.json", fid(dev, .empty)))
        out.append(("train_gold.json", fid(train, .gold)))
        out.append(("dev_gold.json", fid(dev, .gold)))
        out.append(("train_scored.json", fid(train, .scored)))
        out.append(("dev_scored.json", fid(dev, .scored)))
        out.append(("train_exercises.json", fidData(exercises(config.exercises, split: "train"))))
        out.append(("dev_exercises.json", fidData(exercises(config.exercises > 0 ? config.dev : 0, split: "dev"))))
        out.append(("reader/config.json", try json(Self.readerConfig)))
        out.append(("reader/tokenizer.json", Self.readerTokenizerJSON()))
        // So transformers' AutoTokenizer reads the folder as fidq does (no T5 sentinels, pad named).
        let pieces = Set(Self.readerPieces.map(\.piece) + ["<pad>", "</s>", "<unk>"])
        if let config = T5Saver.tokenizerConfig(hasPiece: pieces.contains) { out.append(("reader/tokenizer_config.json", config)) }
        out.append(("retriever/config.json", try json(Self.retrieverConfig)))
        out.append(("retriever/vocab.txt", Self.retrieverVocabText()))
        struct World: Encodable { var config: ExampleWorldConfig; var summary: Summary }
        out.append(("world.json", try json(World(config: config, summary: summary))))
        return out
    }

    public var summary: Summary {
        Summary(passages: passages.count, train: train.count, dev: dev.count, people: config.resolvedPeople,
                chanceExactMatch: chanceExactMatch(dev), files: Self.fileNames)
    }

    /// Writes `files()` into `folder` (created if missing), each under a temporary name renamed
    /// into place, so a reader never sees half a file.
    /// - Returns: the summary.
    @discardableResult
    public func write(to folder: String) throws -> Summary {
        let fm = FileManager.default
        for (name, data) in try files() {
            let url = URL(fileURLWithPath: folder).appendingPathComponent(name)
            let dir = url.deletingLastPathComponent()
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            // A killed earlier writer's temporary file of this name (another pid) goes first.
            StaleFiles.removeStaged(in: dir.path, name: url.lastPathComponent)
            let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
            try data.write(to: tmp)
            if rename(tmp.path, url.path) != 0 {
                try? fm.removeItem(at: tmp)
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
            }
        }
        return summary
    }

    /// `passages.tsv` bytes: header `id\ttext\ttitle`, `\n` line ends, fields quoted as Python's
    /// `csv.writer(delimiter="\t")` does (QUOTE_MINIMAL: a field holding a tab, quote, CR or LF is
    /// quoted, inner quotes doubled), so `csv.reader` and DPR's loader read it back unchanged.
    public func tsv() -> Data {
        var out = "id\ttext\ttitle\n"
        for p in passages {
            out += Self.tsvField(p.id) + "\t" + Self.tsvField(p.text) + "\t" + Self.tsvField(p.title) + "\n"
        }
        return Data(out.utf8)
    }

    static func tsvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "\t" || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A small T5 for the demo: the world's vocabulary (`readerVocabularySize` pieces), d 128, 4
    /// heads of 32, 2 encoder and 2 decoder layers, no dropout (a few minutes on a small synthetic
    /// set: dropout only slows the learning down). At d 64 it learns slower and its
    /// cross-attention, which the retriever learns from, singles out the gold passage less often.
    public static let readerConfig = ReaderConfigJSON()
    /// A small BERT for the demo: the world's uncased vocabulary (`retrieverVocabulary`), d 64, 4
    /// heads, 2 layers.
    public static let retrieverConfig = RetrieverConfigJSON()

    /// `config.json` of the demo's T5 (Hugging Face key names).
    public struct ReaderConfigJSON: Codable, Sendable, Equatable {
        public var architectures = ["T5ForConditionalGeneration"]
        public var model_type = "t5"
        public var vocab_size = ExampleWorld.readerVocabularySize
        public var d_model = 128
        public var d_kv = 32
        public var d_ff = 512
        public var num_layers = 2
        public var num_decoder_layers = 2
        public var num_heads = 4
        public var relative_attention_num_buckets = 32
        public var relative_attention_max_distance = 128
        public var dropout_rate = 0.0
        public var layer_norm_epsilon = 1e-6
        public var feed_forward_proj = "relu"
        public var tie_word_embeddings = true
        public var pad_token_id = 0
        public var eos_token_id = 1
        public var decoder_start_token_id = 0
    }

    /// `config.json` of the demo's BERT (Hugging Face key names).
    public struct RetrieverConfigJSON: Codable, Sendable, Equatable {
        public var architectures = ["BertModel"]
        public var model_type = "bert"
        public var vocab_size = ExampleWorld.retrieverVocabulary.count
        public var hidden_size = 64
        public var num_hidden_layers = 2
        public var num_attention_heads = 4
        public var intermediate_size = 256
        public var hidden_act = "gelu"
        public var hidden_dropout_prob = 0.1
        public var attention_probs_dropout_prob = 0.1
        public var max_position_embeddings = 512
        public var type_vocab_size = 2
        public var initializer_range = 0.02
        public var layer_norm_eps = 1e-12
        public var pad_token_id = 0
    }
}
