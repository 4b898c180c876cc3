// FiDLayout: what FiD's scripts write under `checkpoint_dir/name/`, and the FiD options a kind
// accepts so FiD's command lines run unchanged.
import Formats
import Foundation
import Jobs
import Models
import Tensor

/// FiD's run folder `checkpoint_dir/name/`: the scripts' outputs copied there, each under a
/// temporary name and then renamed, so a reader never sees half a file or folder.
public enum FiDLayout {
    /// FiD's `name` param, one folder of `checkpoint_dir` (default `experiment_name`): a `/` or
    /// `..` would put the run's files outside `checkpoint_dir`, where the job's checks never looked.
    public static func runName<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> String {
        try c.require(try c.decode(key, default: "experiment_name"), key, "a folder name (no '/')") {
            !$0.isEmpty && !$0.contains("/") && $0 != "." && $0 != ".."
        }
    }

    /// `checkpoint_dir/name`, checked as an output with every symlink on the way followed (a
    /// `name` that is a symlink to elsewhere, or a `checkpoint/` in it that is, led the copies
    /// out of the workspace).
    public static func runFolder(_ checkpointDir: String, _ name: String, _ context: JobContext) throws -> String {
        let run = try context.output(checkpointDir + "/" + name, field: "params.checkpoint_dir")
        _ = try context.output(run + "/checkpoint/step", field: "params.checkpoint_dir")
        return run
    }

    /// The weights' names in FiD's checkpoints.
    public enum Names: Sendable {
        /// `FiDT5`'s: the encoder wrapped (`encoder.encoder.block.N.module.…`), the embeddings
        /// tied under every name `state_dict()` lists.
        case reader
        /// `Retriever`'s, as fidq saves them already (`model.…`, `proj`, `norm`).
        case retriever
    }

    /// Copies the last step and `best_dev` to FiD's layout `checkpoint_dir/name/checkpoint/`, as
    /// FiD's `util.save` leaves them: each folder with `config.json`, the tokenizer, fidq's
    /// optimizer state and `pytorch_model.bin` under FiD's names (what FiD's released checkpoints
    /// hold, and the one weight file transformers 3.0.2, FiD's pin, reads; a `model.safetensors`
    /// beside it would win in transformers 4 with the plain names, and `FiDT5.from_pretrained`
    /// would start its encoder from random weights), and `latest` a symlink to the last step.
    ///
    /// Each folder also gets FiD's `optimizer.pth.tar` (`FiDOptimizerFile`): the step, the best
    /// metric, `options` as the `opt` namespace, and the schedule's state; the last step's AdamW
    /// moments too, so FiD's `train_reader.py` continues the run from `latest`.
    public static func exportCheckpoints(_ result: TrainResult, to run: String, kind: String, names: Names,
                                         trainer: TrainerConfig, options: [(String, TorchPickle)],
                                         _ context: JobContext) throws {
        let dest = run + "/checkpoint", fm = FileManager.default
        try fm.createDirectory(atPath: dest, withIntermediateDirectories: true)
        var pairs = [(result.latest, "step-\(result.steps)")]
        if let best = result.bestDev { pairs.append((best, "best_dev")) }
        for (src, name) in pairs {
            let staged = dest + "/.\(name).\(context.token).tmp"
            StaleFiles.removeStaged(in: dest, name: name)
            try fm.createDirectory(atPath: staged, withIntermediateDirectories: false)
            // A failed export (a full disk) leaves no partial folder behind, a checkpoint's size.
            var moved = false
            defer { if !moved { try? fm.removeItem(atPath: staged) } }
            for f in try fm.contentsOfDirectory(atPath: src) where !f.hasPrefix(".") && f != "model.safetensors" {
                try copyNamed(src + "/" + f, to: staged + "/" + f, destination: dest + "/" + name + "/" + f)
            }
            try writeTorchWeights(folder: src, names: names, to: staged + "/pytorch_model.bin")
            let momentsPath = src + "/" + Trainer.optimizerFile
            let moments = fm.fileExists(atPath: momentsPath) ? try SafeTensorsFile(path: momentsPath) : nil
            let step = name == "best_dev" ? (result.bestStep ?? result.steps) : result.steps
            let file = FiDOptimizerFile(
                order: try parameterOrder(folder: src, names: names), optim: trainer.optim, step: step,
                optimizerSteps: moments?.metadata?["step"].flatMap { Int($0) } ?? step / max(1, trainer.accumulationSteps),
                best: result.bestMetric ?? (names == .reader ? 0 : .infinity), options: options)
            try file.write(moments: moments, to: staged + "/optimizer.pth.tar")
            if fm.fileExists(atPath: dest + "/" + name) { try fm.removeItem(atPath: dest + "/" + name) }
            try fm.moveItem(atPath: staged, toPath: dest + "/" + name)
            moved = true
        }
        let link = dest + "/.latest.\(context.token).tmp"
        StaleFiles.removeStaged(in: dest, name: "latest")
        try fm.createSymbolicLink(atPath: link, withDestinationPath: "step-\(result.steps)")
        guard Foundation.rename(link, dest + "/latest") == 0 else {
            throw JobError.transient("cannot rename \(link) to \(dest)/latest: \(String(cString: strerror(errno)))")
        }
        context.log("\(kind): exported step-\(result.steps)\(result.bestDev == nil ? "" : " and best_dev") to \(dest) "
                    + "(pytorch_model.bin under FiD's names)")
    }

    /// FiD's model's parameters in `parameters()` order under fidq's names (module order): T5's
    /// with transformers 3.0.2's cross-attention bias (the export always holds it), the retriever's
    /// with BERT's pooler (FiD's `BertModel` has one; fidq never trains it) before the projection.
    static func parameterOrder(folder: String, names: Names) throws -> [String] {
        switch names {
        case .reader:
            return try T5Config.load(path: folder + "/config.json").layout(crossAttentionBias: true).entries.map(\.name)
        case .retriever:
            var order = try BertConfig.load(path: folder + "/config.json").layout().entries.map(\.name)
            order.insert(contentsOf: ["pooler.dense.weight", "pooler.dense.bias"], at: order.firstIndex(of: "proj.weight") ?? order.count)
            return order
        }
    }

    /// `folder`'s `model.safetensors` as a `torch.save`d state dict under FiD's names.
    static func writeTorchWeights(folder: String, names: Names, to path: String) throws {
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        var tied: [String] = []
        let config = names == .reader ? try T5Config.load(path: folder + "/config.json") : nil
        if let config {
            tied = ["encoder.encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
                + (config.tieWordEmbeddings && !file.names.contains("lm_head.weight") ? ["lm_head.weight"] : [])
        }
        var entries = try file.names.map { name -> TorchCheckpointWriter.Entry in
            let shape = try file.entry(name).shape
            let keys = names == .reader ? [readerName(name)] + (name == "shared.weight" ? tied : []) : [name]
            return TorchCheckpointWriter.Entry(names: keys, shape: shape) { try file.tensor(name).data }
        }
        // transformers 3.0.2 (FiD's pin) gives decoder block 0's cross-attention a relative bias
        // and starts it at random when the file lacks it, changing every answer. Zeros are what
        // fidq and transformers 4 compute without it (4 ignores the name on load).
        if let config, !file.names.contains(T5Model.crossBiasName) {
            let shape = [config.relativeAttentionNumBuckets, config.numHeads]
            entries.append(TorchCheckpointWriter.Entry(names: [T5Model.crossBiasName], shape: shape) {
                [Float](repeating: 0, count: shape[0] * shape[1])
            })
        }
        try TorchCheckpointWriter.write(entries, to: path)
    }

    /// A Hugging Face T5 name as `FiDT5.state_dict()` names it: the encoder stack sits inside
    /// `EncoderWrapper` (`encoder.encoder.`), each block inside a `CheckpointWrapper` (`.module.`).
    static func readerName(_ name: String) -> String {
        guard name.hasPrefix("encoder.") else { return name }
        var wrapped = "encoder." + name
        if name.hasPrefix("encoder.block.") {
            let rest = name.dropFirst("encoder.block.".count)
            if let dot = rest.firstIndex(of: ".") {
                wrapped = "encoder.encoder.block." + rest[..<dot] + ".module" + rest[dot...]
            }
        }
        return wrapped
    }

    /// Copies the file `source` to `destination`, replacing what is there in one rename.
    public static func copy(_ source: String, to destination: String, tag: String) throws {
        let fm = FileManager.default
        let folder = (destination as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let staged = folder + "/." + (destination as NSString).lastPathComponent + ".\(tag).tmp"
        StaleFiles.removeStaged(in: folder, name: (destination as NSString).lastPathComponent)
        do { try copyNamed(source, to: staged, destination: destination) } catch {
            try? fm.removeItem(atPath: staged)  // a partial copy held the space a retry needed
            throw error
        }
        guard Foundation.rename(staged, destination) == 0 else {
            let e = errno
            try? fm.removeItem(atPath: staged)
            throw JobError.transient("cannot rename \(staged) to \(destination): \(String(cString: strerror(e)))")
        }
    }

    /// `FileManager.copyItem` with an error that names what was copied where and why
    /// (Foundation's led with the source, under running/, and "There isn't enough space.").
    static func copyNamed(_ source: String, to staged: String, destination: String) throws {
        do { try FileManager.default.copyItem(atPath: source, toPath: staged) } catch {
            let ns = error as NSError
            let why = (ns.userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
                ?? ns.localizedDescription
            throw JobError.transient("cannot copy \(source) to \(destination): \(why)")
        }
    }
}

/// FiD options that a kind accepts, so that FiD's own command lines (its README's) run, and that
/// change nothing: FiD's script ignores them too, or fidq has one behaviour where FiD offers two.
/// A run names the ones given in its log, with why.
public struct FiDIgnoredOptions: Equatable, Sendable {
    /// "option (why)" for each one given, in the order of `options`.
    public var given: [String] = []

    public init() {}

    /// The `options` (key, why) present in `c`; their values are not read.
    public init<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ options: [(K, String)]) {
        given = options.filter { c.contains($0.0) }.map { "\($0.0.stringValue) (\($0.1))" }
    }

    /// FiD's base options (`src/options.py`) that change nothing in a fidq job: with the type's
    /// keys for `maxload`, `local_rank` and `main_port`.
    public static func base<K: CodingKey>(_ maxload: K, _ localRank: K, _ mainPort: K) -> [(K, String)] {
        let distributed = "a job is one process: more workers take more jobs (shards), see the README's Slurm example"
        return [(maxload, "FiD defines it and never reads it"), (localRank, distributed), (mainPort, distributed)]
    }

    /// The log line, nil when none was given.
    public func note(_ kind: String) -> String? {
        given.isEmpty ? nil : "\(kind): FiD options without effect here: " + given.joined(separator: "; ")
    }
}
