// FiDOptimizerFile: FiD's `optimizer.pth.tar` from a fidq checkpoint, so FiD's scripts continue a
// fidq run (`checkpoint/latest`) or start from one (`--model_path`).
import Foundation
import Formats
import Tensor

/// What FiD's `util.save` pickles beside the weights, `torch.save({"step", "optimizer",
/// "scheduler", "opt", "best_eval_metric"})`, and `util.load` reads back: torch 1.6's AdamW or
/// Adam state (moments by parameter index, in the model's `parameters()` order), its
/// `WarmupLinearScheduler` or `FixedScheduler` state after the optimizer steps taken, and the
/// run's options as an `argparse.Namespace`.
struct FiDOptimizerFile {
    /// FiD's model's parameters in `parameters()` order, by fidq's name; a name without moments in
    /// the checkpoint (a parameter fidq does not train, such as BERT's pooler) gets no state, as
    /// torch leaves a parameter no step has touched.
    var order: [String]
    var optim: OptimConfig
    /// Micro-batches run (FiD's `step`) and updates applied (the scheduler's steps).
    var step: Int
    var optimizerSteps: Int
    /// FiD's `best_eval_metric`: the reader's best dev exact match (a fraction), the retriever's
    /// best eval loss.
    var best: Double
    /// The `opt` namespace's attributes.
    var options: [(String, TorchPickle)]

    /// Writes the file to `path`, the moments read from `moments` (fidq's `optimizer.safetensors`,
    /// `m.<name>` and `v.<name>`); nil writes no state (FiD's `best_dev` holds the state of its
    /// step; fidq keeps it only for resumable steps), enough for `--model_path`.
    /// - Throws: the moments file's errors; a moment of a parameter not in `order` (a layout this
    ///   code does not know) is refused rather than written at the wrong index.
    func write(moments: SafeTensorsFile?, to path: String) throws {
        var storages: [TorchCheckpointWriter.Storage] = []
        var state: [(TorchPickle, TorchPickle)] = []
        if let moments {
            let known = Set(order)
            if let stray = moments.names.first(where: { !known.contains(String($0.dropFirst(2))) }) {
                throw SafeTensorsError(.headerLayout, path: moments.path, "moment \(stray) names no parameter of FiD's model",
                                       hint: "the checkpoint's optimizer state does not match its model")
            }
            for (index, name) in order.enumerated() where moments.names.contains("m." + name) {
                var slots: [(String, TorchPickle)] = [("step", .int(optimizerSteps))]
                for (key, prefix) in [("exp_avg", "m."), ("exp_avg_sq", "v.")] {
                    let shape = try moments.entry(prefix + name).shape
                    slots.append((key, .tensor(storage: storages.count, shape: shape)))
                    storages.append(.init(count: shape.reduce(1, *), values: { try moments.tensor(prefix + name).data }, name: prefix + name))
                }
                state.append((.int(index), .dict(slots)))
            }
        }
        let schedule = optim.schedule
        let lrNow = schedule.lr(base: optim.lr, afterSteps: optimizerSteps)
        let group: [(String, TorchPickle)] = [
            ("lr", .float(lrNow)), ("betas", .tuple([.float(0.9), .float(0.999)])), ("eps", .float(1e-8)),
            ("weight_decay", .float(optim.optim == .adamw ? optim.weightDecay : 0)), ("amsgrad", .bool(false)),
            ("initial_lr", .float(optim.lr)), ("params", .list(order.indices.map(TorchPickle.int))),
        ]
        let optimizer = TorchPickle.dict([("state", .dict(state, ordered: false)), ("param_groups", .list([.dict(group)]))])
        // LambdaLR.state_dict(): the scheduler's attributes, its lambda a bound method (`{}`).
        var scheduler: [(String, TorchPickle)] = []
        if optim.scheduler == .linear {
            scheduler = [("warmup_steps", .int(schedule.warmupSteps)), ("scheduler_steps", .int(schedule.schedulerSteps)),
                         ("min_ratio", .float(schedule.minRatio)), ("fixed_lr", .bool(schedule.fixedLr))]
        }
        scheduler += [("base_lrs", .list([.float(optim.lr)])), ("last_epoch", .int(optimizerSteps)),
                      ("_step_count", .int(optimizerSteps + 1)), ("_get_lr_called_within_step", .bool(false)),
                      ("_last_lr", .list([.float(lrNow)])), ("lr_lambdas", .list([.dict([] as [(String, TorchPickle)])]))]
        let root = TorchPickle.dict([
            ("step", .int(step)), ("optimizer", optimizer), ("scheduler", .dict(scheduler)),
            ("opt", .object(module: "argparse", name: "Namespace", state: options)), ("best_eval_metric", .float(best)),
        ])
        try TorchCheckpointWriter.save(root, storages: storages, to: path)
    }

    /// The options of a job's params as FiD's `opt` holds them: every param under its FiD name
    /// (`params`' JSON encoding), then what FiD's `set_optim` reads from the optimizer config,
    /// `scheduler_steps` None when unset and `model_path` 'none' when absent, as FiD's defaults.
    static func options<P: Encodable>(_ params: P, optim: OptimConfig) throws -> [(String, TorchPickle)] {
        // Sorted: the same params give the same bytes in every process (key order varied).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = try encoder.encode(params)
        let node = try data.withUnsafeBytes { raw -> JSONNode in
            var parser = JSONParser(bytes: raw)
            return try parser.parseDocument()
        }
        func value(_ n: JSONNode) -> TorchPickle {
            switch n {
            case let .object(pairs): return .dict(pairs.map { ($0.0, value($0.1)) })
            case let .array(items): return .list(items.map(value))
            case let .string(s): return .string(s)
            case let .integer(i): return .int(i)
            case .number: return .float(n.doubleValue ?? .nan)
            case let .bool(b): return .bool(b)
            case .null: return .none
            }
        }
        guard case let .object(pairs) = node else { return [] }
        let fromOptim: [(String, TorchPickle)] = [
            ("optim", .string(optim.optim.rawValue)), ("scheduler", .string(optim.scheduler.rawValue)), ("lr", .float(optim.lr)),
            ("weight_decay", .float(optim.weightDecay)), ("warmup_steps", .int(optim.warmupSteps)),
            ("total_steps", .int(optim.totalSteps)), ("scheduler_steps", optim.schedulerSteps.map(TorchPickle.int) ?? .none),
            ("fixed_lr", .bool(optim.fixedLr)), ("clip", .float(optim.clip)),
        ]
        let set = Set(fromOptim.map(\.0))
        var options = pairs.filter { !set.contains($0.0) }.map { ($0.0, value($0.1)) } + fromOptim
        if !options.contains(where: { $0.0 == "model_path" }) { options.append(("model_path", .string("none"))) }
        return options
    }
}
