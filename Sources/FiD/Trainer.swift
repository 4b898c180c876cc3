// Trainer: FiD's training loop (train_reader.py / train_retriever.py, fid-spec §8.2) over any
// `Trainable`: accumulation, clipping, optimizer and schedule, eval, checkpoints, exact resume.
import Foundation
import Jobs
import Tensor

/// What the shared trainer trains: one parameter slab, a micro-batch step, an eval and a save.
///
/// The reader (`ReaderTrainable`) conforms now; the retriever's distillation will too.
public protocol Trainable: AnyObject {
    /// The parameters the optimizer updates in place; checkpoints save and restore them.
    var params: ParameterSlab { get }
    /// Training examples the data order draws micro-batches from.
    var trainCount: Int { get }
    /// Forward and backward of one micro-batch (training mode), **accumulating** (+=) ∂loss/∂θ into
    /// `grads`. `rng` drives dropout and any per-step sampling (FiD's `random.choice(answers)`).
    func trainStep(examples: [Int], grads: ParameterSlab, rng: inout RNG) throws -> TrainStepStats
    /// The dev metric (higher is better; exact match for the reader), or nil without dev data.
    /// Must not depend on any training RNG, so it is the same whether a run resumed or not.
    func evaluate(_ report: (_ done: Int, _ total: Int) throws -> Void) throws -> Double?
    /// Writes the model as a Hugging Face folder into the existing folder `dir`.
    func saveModel(into dir: String) throws
    /// How the log and `result.json` present the dev metric (FiD's exact match by default).
    var devMetric: DevMetric { get }
}

extension Trainable {
    public var devMetric: DevMetric { .exactMatch }
}

/// How a progress line and `result.json` present the dev metric the trainer maximises.
public struct DevMetric: Sendable {
    /// `result.json`'s keys `final_<name>` and `best_<name>`.
    public var name: String
    /// The reported value from the trainer's (higher is better) metric.
    public var report: @Sendable (Double) -> Double
    /// The progress line's text of a reported value.
    public var text: @Sendable (Double) -> String

    /// FiD's exact match: `evaluation 12.34EM`; `final_em` / `best_em` as fractions.
    public static let exactMatch = DevMetric(name: "em", report: { $0 }, text: { String(format: "%.2fEM", 100 * $0) })
    /// An eval loss, which the trainer maximises as −loss (FiD keeps `best_dev` at the lowest):
    /// `evaluation loss 0.05765`; `final_eval_loss` / `best_eval_loss`, positive.
    public static let evalLoss = DevMetric(name: "eval_loss", report: { -$0 }, text: { String(format: "loss %.5f", $0) })

    func line(_ metric: Double) -> String { text(report(metric)) }
}

/// What one micro-batch step reports.
public struct TrainStepStats: Sendable {
    /// The micro-batch's loss (FiD's reduced loss, not divided by `accumulation_steps`).
    public var loss: Double
    /// Input tokens processed (for tokens/s).
    public var tokens: Int

    public init(loss: Double, tokens: Int) {
        self.loss = loss
        self.tokens = tokens
    }
}

/// The loop's options under FiD's names; a kind's params embed these.
public struct TrainerConfig: Codable, Equatable, Sendable {
    /// Optimizer and schedule (`optim`, `scheduler`, `lr`, `weight_decay`, `warmup_steps`,
    /// `total_steps`, `scheduler_steps`, `fixed_lr`, `clip`).
    public var optim = OptimConfig()
    /// `per_gpu_batch_size`: examples per micro-batch.
    public var batchSize = 1
    /// `accumulation_steps`: micro-batches whose gradients are summed per optimizer step.
    public var accumulationSteps = 1
    /// `eval_freq`, in micro-batches.
    public var evalFreq = 500
    /// `save_freq`, in micro-batches.
    public var saveFreq = 5000
    /// `eval_print_freq`: micro-batches between log lines.
    public var evalPrintFreq = 1000
    /// `seed` of the data order, dropout and target sampling.
    public var seed = 0
    /// Step checkpoints kept (the one `latest` names is always kept).
    public var keepLast = 2

    public init() {}

    /// FiD's loop and optimizer options, shared by every training kind's params. Each kind lists
    /// these keys among its own (its strict container refuses unknown keys) and reads them here,
    /// so the names, defaults and range checks live in one place.
    public init(fidOptionsFrom decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        func positive(_ name: String, _ fallback: Int) throws -> Int {
            let key = AnyCodingKey(stringValue: name)
            return try c.require(try c.decode(key, default: fallback), key, "an integer >= 1") { $0 >= 1 }
        }
        batchSize = try positive("per_gpu_batch_size", 1)
        accumulationSteps = try positive("accumulation_steps", 1)
        evalFreq = try positive("eval_freq", 500)
        saveFreq = try positive("save_freq", 5000)
        evalPrintFreq = try positive("eval_print_freq", 1000)
        keepLast = try positive("keep_last", 2)
        let seedKey = AnyCodingKey(stringValue: "seed")
        seed = try c.require(try c.decode(seedKey, default: 0), seedKey, "an integer >= 0") { $0 >= 0 }
        do { optim = try OptimConfig(from: decoder) } catch let e as OptimConfigError {
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath + [AnyCodingKey(stringValue: e.field)],
                debugDescription: "expected \(e.expected), found \(e.found)" + (e.hint.map { " (\($0))" } ?? "")))
        }
    }

    /// Writes the options `init(fidOptionsFrom:)` reads, under FiD's names, beside the kind's own keys.
    public func encodeFiDOptions(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        func put<T: Encodable>(_ value: T?, _ name: String) throws {
            try c.encodeIfPresent(value, forKey: AnyCodingKey(stringValue: name))
        }
        try put(batchSize, "per_gpu_batch_size")
        try put(accumulationSteps, "accumulation_steps")
        try put(evalFreq, "eval_freq")
        try put(saveFreq, "save_freq")
        try put(evalPrintFreq, "eval_print_freq")
        try put(keepLast, "keep_last")
        try put(seed, "seed")
        try put(optim.optim.rawValue, "optim")
        try put(optim.scheduler.rawValue, "scheduler")
        try put(optim.lr, "lr")
        try put(optim.weightDecay, "weight_decay")
        try put(optim.warmupSteps, "warmup_steps")
        try put(optim.totalSteps, "total_steps")
        try put(optim.schedulerSteps, "scheduler_steps")
        try put(optim.clip, "clip")
        try put(optim.fixedLr, "fixed_lr")
    }
}

/// The trainer state a checkpoint holds next to the model and optimizer (`trainer_state.json`).
public struct TrainerState: Codable, Equatable, Sendable {
    /// Always `fidq-trainer`.
    public var format = "fidq-trainer"
    public var version = 1
    /// Micro-batches done.
    public var step: Int
    /// Optimizer updates done.
    public var optimizerSteps: Int
    /// The best dev metric so far (nil before the first eval).
    public var bestDevEM: Double?
    /// The step `best_dev` was saved at.
    public var bestStep: Int?
    /// The metric at the last eval.
    public var lastEM: Double?
    /// The step of the last completed eval (a graceful stop inside an eval leaves it behind `step`,
    /// and the resumed run evaluates first).
    public var lastEvalStep: Int?
    /// The training RNG as it stood after `step` micro-batches.
    public var rng: RNG.State
    /// Data order: epoch and the next micro-batch within it (derived from `step`; recorded so a
    /// mismatch is caught rather than silently resumed).
    public var epoch: Int
    public var epochPosition: Int
    public var seed: Int
    /// Whether `grads.safetensors` holds gradients of micro-batches not yet applied.
    public var pendingGradients: Bool
    /// The training-loss window the log and `final_loss` report: its sum and count so far and
    /// the last closed window's mean, so a resumed run reports what an uninterrupted one does
    /// (nil in checkpoints of older versions).
    public var windowLoss: Double?
    public var windowCount: Int?
    public var lastWindowLoss: Double?
    /// The run's settings a resumed run must share (`Trainer.settings`); nil in checkpoints of
    /// older versions, which are resumed unchecked.
    public var settings: [String: JSONValue]?
    /// Where the linear schedule reached 0 when this was saved (`scheduler_steps`, or
    /// `total_steps`), so a resumed run says when it moves.
    public var schedulerSteps: Int?

    enum CodingKeys: String, CodingKey {
        case format, version, step, seed, rng, epoch, settings
        case schedulerSteps = "scheduler_steps"
        case optimizerSteps = "optimizer_steps", bestDevEM = "best_dev_em", bestStep = "best_step", lastEM = "last_em"
        case lastEvalStep = "last_eval_step"
        case epochPosition = "epoch_position", pendingGradients = "pending_gradients"
        case windowLoss = "window_loss", windowCount = "window_count", lastWindowLoss = "last_window_loss"
    }
}

/// FiD's sampler: a fresh random permutation of the training set each epoch, `drop_last`
/// (fid-spec §8.2), fixed by the seed and the epoch alone so a resumed run sees the same batches.
public struct DataOrder: Sendable {
    public let count: Int
    public let batchSize: Int
    public let seed: Int
    /// Micro-batches per epoch (the last partial batch is dropped, as FiD's loader does).
    public var batchesPerEpoch: Int { count / batchSize }
    private var cachedEpoch = -1
    private var permutation: [Int] = []

    public init(count: Int, batchSize: Int, seed: Int) {
        precondition(count >= batchSize && batchSize >= 1, "DataOrder: \(count) examples, batch \(batchSize)")
        self.count = count
        self.batchSize = batchSize
        self.seed = seed
    }

    /// The examples of micro-batch `step` (0-based over the whole run).
    public mutating func batch(at step: Int) -> [Int] {
        let epoch = step / batchesPerEpoch, k = step % batchesPerEpoch
        if epoch != cachedEpoch {
            var rng = RNG(seed: UInt64(bitPattern: Int64(seed)) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch) &+ 0x5EED)
            permutation = Array(0..<count)
            // Fisher–Yates with our RNG (Swift's shuffle algorithm is not specified across versions).
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                permutation.swapAt(i, j)
            }
            cachedEpoch = epoch
        }
        return Array(permutation[(k * batchSize)..<((k + 1) * batchSize)])
    }
}

/// A running hash (64-bit FNV-1a) of what a training set holds, so a resumed run whose data
/// changed under the same path is refused rather than mixed in: each example's question, target,
/// answers, and its passages' count, titles and scores (not their texts, for speed).
public struct ExamplesFingerprint: Sendable, Equatable {
    public private(set) var count = 0
    private var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    private mutating func add(_ text: String) {
        for b in text.utf8 { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        hash = (hash ^ 0xff) &* 0x0000_0100_0000_01b3  // no UTF-8 byte: a separator
    }

    public mutating func add(_ e: FiDExample) {
        count += 1
        add(e.question)
        add(e.target ?? "\u{0}")
        e.answers.forEach { add($0) }
        add("\(e.answers.count) \(e.ctxs.count)")
        for c in e.ctxs {
            add(c.title)
            add(c.score.map { String($0.bitPattern, radix: 16) } ?? "-")  // the reader's scores a retriever distils
        }
    }

    /// 16 hex digits, leading zeros kept.
    static func hex(_ x: UInt64) -> String {
        let digits = String(x, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// `count` and the hash, as a checkpoint records them.
    public var value: JSONValue { .string("\(count) examples, \(Self.hex(hash))") }
}

/// Training params a run may change and still resume a folder's checkpoints (a run extended to
/// more steps, or evaluated and saved at other intervals), as FiD resumes `latest` whatever its
/// options; the rest (data, model, optimizer, seed) must match.
public let trainerResumableChanges: Set<String> = [
    "total_steps", "scheduler_steps", "eval_freq", "save_freq", "eval_print_freq", "keep_last",
]

/// What a training job returns (`result.json`).
public struct TrainResult: Codable, Sendable {
    /// Micro-batches run in total (FiD's `step`).
    public var steps: Int
    public var optimizerSteps: Int
    /// The step this attempt resumed from (0: fresh).
    public var resumedFrom: Int
    /// `DevMetric.name`: the keys `final_<metric>` and `best_<metric>` (`em`, `eval_loss`).
    public var metric: String
    /// The dev metric after the last step and its best, as `DevMetric.report` gives them (nil
    /// without dev data).
    public var finalMetric: Double?
    public var bestMetric: Double?
    public var bestStep: Int?
    /// Mean loss of the last `eval_print_freq` window.
    public var finalLoss: Double?
    /// Input tokens per second of this attempt's training steps; nil (`null`) when it ran none (a
    /// finished run run again, resumed at its end): 0 read as a stalled run.
    public var tokensPerS: Double?
    /// `out/checkpoint/step-N` of the last step (a Hugging Face folder).
    public var latest: String
    /// `out/checkpoint/best_dev` (nil when never written).
    public var bestDev: String?

    public init(steps: Int, optimizerSteps: Int, resumedFrom: Int, metric: String, finalMetric: Double?, bestMetric: Double?,
                bestStep: Int?, finalLoss: Double?, tokensPerS: Double?, latest: String, bestDev: String?) {
        self.steps = steps; self.optimizerSteps = optimizerSteps; self.resumedFrom = resumedFrom
        self.metric = metric; self.finalMetric = finalMetric; self.bestMetric = bestMetric; self.bestStep = bestStep
        self.finalLoss = finalLoss; self.tokensPerS = tokensPerS; self.latest = latest; self.bestDev = bestDev
    }

    /// Fixed keys, plus `final_<metric>` / `best_<metric>`, whose names follow the metric.
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(steps, forKey: Key("steps"))
        try c.encode(optimizerSteps, forKey: Key("optimizer_steps"))
        try c.encode(resumedFrom, forKey: Key("resumed_from"))
        try c.encodeIfPresent(finalMetric, forKey: Key("final_" + metric))
        try c.encodeIfPresent(bestMetric, forKey: Key("best_" + metric))
        try c.encodeIfPresent(bestStep, forKey: Key("best_step"))
        try c.encodeIfPresent(finalLoss, forKey: Key("final_loss"))
        try c.encode(tokensPerS, forKey: Key("tokens_per_s"))  // null, not left out, when no step ran
        try c.encode(latest, forKey: Key("latest"))
        try c.encodeIfPresent(bestDev, forKey: Key("best_dev"))
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        steps = try c.decode(Int.self, forKey: Key("steps"))
        optimizerSteps = try c.decode(Int.self, forKey: Key("optimizer_steps"))
        resumedFrom = try c.decode(Int.self, forKey: Key("resumed_from"))
        // The metric's name from whichever `best_`/`final_` key is there (but not `best_step`, `best_dev`).
        let named = c.allKeys.map(\.stringValue).first {
            ($0.hasPrefix("final_") && $0 != "final_loss") || ($0.hasPrefix("best_") && $0 != "best_step" && $0 != "best_dev")
        }
        metric = named.map { String($0.drop { $0 != "_" }.dropFirst()) } ?? DevMetric.exactMatch.name
        finalMetric = try c.decodeIfPresent(Double.self, forKey: Key("final_" + metric))
        bestMetric = try c.decodeIfPresent(Double.self, forKey: Key("best_" + metric))
        bestStep = try c.decodeIfPresent(Int.self, forKey: Key("best_step"))
        finalLoss = try c.decodeIfPresent(Double.self, forKey: Key("final_loss"))
        tokensPerS = try c.decodeIfPresent(Double.self, forKey: Key("tokens_per_s"))
        latest = try c.decode(String.self, forKey: Key("latest"))
        bestDev = try c.decodeIfPresent(String.self, forKey: Key("best_dev"))
    }
}

/// Runs FiD's loop over a `Trainable` inside a job: checkpoints through `context.checkpoints`,
/// progress and log lines through the context, stops at safe points when asked.
public final class Trainer {
    public let config: TrainerConfig
    let model: Trainable
    let context: JobContext
    /// A name for log lines (`train_reader`).
    let label: String
    /// What this run's checkpoints record of its settings, and a resumed run must match
    /// (`settings(of:leaving:extra:)`); empty: nothing checked but the seed.
    public var settings: [String: JSONValue] = [:]

    public static let stateFile = "trainer_state.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let gradsFile = "grads.safetensors"
    /// The weights a Hugging Face folder holds under canonical names (what `saveModel` writes and
    /// resuming reads back into the slab).
    public static let weightsFile = "model.safetensors"

    public init(config: TrainerConfig, model: Trainable, context: JobContext, label: String) {
        self.config = config
        self.model = model
        self.context = context
        self.label = label
    }

    /// The settings of a training job its checkpoints record: each param the kind encodes, less
    /// those a resumed run may change (`trainerResumableChanges`, `threads`) and `leaving` (paths,
    /// which may be typed another way, and settings without effect on the weights), plus `extra`
    /// (what the paths hold: the data's `ExamplesFingerprint`s, the model's shape, the tokenizer's).
    public static func settings<P: Encodable>(of params: P, leaving: Set<String>, extra: [String: JSONValue]) throws -> [String: JSONValue] {
        guard case .object(let all) = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(params)) else { return extra }
        var out = extra
        for (key, value) in all where !trainerResumableChanges.contains(key) && !leaving.contains(key) && key != "threads" {
            out[key] = value
        }
        return out
    }

    /// A model config's fields as `model.<name>` settings (a `model_config` or `model_path` that
    /// names another shape, or another dropout, than the checkpoint's).
    public static func modelSettings<C: Encodable>(_ config: C) -> [String: JSONValue] {
        guard let data = try? JSONEncoder().encode(config), case .object(let all)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            return [:]
        }
        return Dictionary(uniqueKeysWithValues: all.map { ("model." + $0.key, $0.value) })
    }

    /// A file's bytes as a hash (FNV-1a 64) for `settings`: a tokenizer swapped under one path.
    public static func fileHash(_ path: String) -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else { return .string("unreadable") }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return .string("\(data.count) bytes, \(ExamplesFingerprint.hex(hash))")
    }

    /// Trains to `total_steps` micro-batches, resuming from `latest` when the job has one.
    ///
    /// FiD's semantics (fid-spec §8.2): gradients are summed over `accumulation_steps`
    /// micro-batches; clipping, the optimizer and the scheduler step once per optimizer step;
    /// `total_steps`, `eval_freq`, `save_freq` and `eval_print_freq` count micro-batches. Unlike
    /// FiD (`step > total_steps`), exactly `total_steps` micro-batches run. A `step-N` checkpoint
    /// is also written after the last step and when the job is asked to stop.
    ///
    /// - Throws: `CancellationError` when stopped (after saving a checkpoint); `JobError` for a
    ///   damaged checkpoint; the model's errors.
    public func run() throws -> TrainResult {
        let c = config, o = c.optim
        let params = model.params
        let grads = ParameterSlab(layout: params.layout)
        var optimizer = o.makeOptimizer(count: params.count)
        var order = DataOrder(count: model.trainCount, batchSize: c.batchSize, seed: c.seed)
        let ckpt = try context.checkpoints(keepLast: c.keepLast)
        var state = TrainerState(
            step: 0, optimizerSteps: 0, bestDevEM: nil, bestStep: nil, lastEM: nil, lastEvalStep: nil, rng: RNG(seed: UInt64(bitPattern: Int64(c.seed))).state,
            epoch: 0, epochPosition: 0, seed: c.seed, pendingGradients: false)
        if let (step, dir) = ckpt.latest() {
            state = try restore(from: dir, step: step, older: ckpt.steps().last { $0 < step }, optimizer: &optimizer, grads: grads)
            context.log("\(label): resumed from \(dir) (step \(step), \(state.optimizerSteps) optimizer steps)")
            // Fewer steps than done: the run would report a result of more steps than asked.
            guard step <= o.totalSteps else {
                throw JobError.permanent("checkpoint \(kept(dir)) is at step \(step), past total_steps \(o.totalSteps)", field: "params.total_steps",
                                         hint: "give total_steps \(step) or more to resume this run, or train a new one from model_path \(kept(dir)) (copied out first: starting over removes it); or " + context.startOver)
            }
            // FiD rebuilds the scheduler from the checkpoint's options, so its lr stays 0 past the
            // old end; here the schedule follows the params, and the log says where it moved.
            if let before = state.schedulerSteps, before != o.schedule.schedulerSteps, o.scheduler == .linear, !o.fixedLr {
                var old = o
                old.schedulerSteps = before
                let was = old.schedule.lr(base: o.lr, afterSteps: state.optimizerSteps), now = o.schedule.lr(base: o.lr, afterSteps: state.optimizerSteps)
                context.log("\(label): the linear schedule now reaches lr 0 at optimizer step \(o.schedule.schedulerSteps), not \(before) as when step-\(step) was saved "
                    + "(total_steps or scheduler_steps changed): the lr there is \(Self.number(now)), was \(Self.number(was)) (FiD keeps the checkpoint's schedule)")
            }
        }
        guard var rng = RNG(state: state.rng) else { preconditionFailure("validated in restore") }
        let resumedFrom = state.step
        var lastSaved = resumedFrom > 0 ? resumedFrom : -1
        let todo = state.step < o.totalSteps ? "micro-batches \(state.step + 1)…\(o.totalSteps)" : "all \(o.totalSteps) micro-batches done already"
        context.log("\(label): \(todo), batch \(c.batchSize) × accumulation \(c.accumulationSteps), "
            + "\(order.batchesPerEpoch) batches per epoch, optim \(o.optim.rawValue) lr \(o.lr) scheduler \(o.scheduler.rawValue)")

        var windowLoss = state.windowLoss ?? 0, windowCount = state.windowCount ?? 0, lastWindowLoss = state.lastWindowLoss
        /// `state` as a checkpoint of `step` records it.
        func fill(_ step: Int) {
            state.step = step
            (state.windowLoss, state.windowCount, state.lastWindowLoss) = (windowLoss, windowCount, lastWindowLoss)
            state.rng = rng.state
            state.epoch = step / order.batchesPerEpoch
            state.epochPosition = step % order.batchesPerEpoch
            state.pendingGradients = step % c.accumulationSteps != 0
            state.settings = settings.isEmpty ? nil : settings
            state.schedulerSteps = o.schedule.schedulerSteps
        }
        func save(_ step: Int) throws {
            guard step != lastSaved else { return }
            fill(step)
            let s = state
            try ckpt.save(step: step) { dir in try self.write(into: dir, state: s, optimizer: optimizer.state, grads: grads) }
            lastSaved = step
        }

        // The hint of a diverged run: a resumed run keeps its options, so a new lr needs a new run.
        func diverged() -> String {
            "lower lr (lr \(Self.number(o.lr)), clip \(Self.number(o.clip))), or check the data; then start a new run in a new out folder"
                + (lastSaved > 0 ? " (or from model_path \(ckpt.root)/step-\(lastSaved), the last checkpoint saved)" : "")
        }
        var tokens = 0, trainSeconds = 0.0
        // The lr of the last update made (a resumed run's first progress line shows what an
        // unstopped run's showed there), or the first one's before any.
        var lr = o.schedule.lr(base: o.lr, afterSteps: max(0, optimizer.state.step - 1))
        func isEvalStep(_ step: Int) -> Bool { step % c.evalFreq == 0 || step == o.totalSteps }
        /// Evaluates at `state.step`, keeping `best_dev` when the metric improves.
        func evalNow() throws -> Double? {
            let em = try evaluate()
            if let em, !em.isFinite {
                throw JobError.permanent("\(label): the dev \(model.devMetric.name) is \(model.devMetric.report(em)) at step \(state.step)", field: "params.lr",
                                         hint: diverged())
            }
            state.lastEM = em
            state.lastEvalStep = state.step
            if let em, state.bestDevEM.map({ em > $0 }) ?? true {
                state.bestDevEM = em
                state.bestStep = state.step
                try ckpt.save(name: "best_dev") { dir in try self.model.saveModel(into: dir) }
            }
            return em
        }
        /// The progress line of `step` (with its eval's metric) and, at a print step, the close of
        /// the loss window.
        func report(_ step: Int, _ em: Double?, note: String = "") {
            guard step % c.evalPrintFreq == 0 || em != nil || step == o.totalSteps else { return }
            let avg = windowCount > 0 ? windowLoss / Double(windowCount) : 0
            var line = "\(label): \(step) / \(o.totalSteps) | train \(fmt(avg, 4)) | lr \(lr < 1e6 ? fmt(lr, 6) : Self.number(lr)) | "
                + "\(fmt(trainSeconds > 0 ? Double(tokens) / trainSeconds : 0, 0)) tokens/s"
            if let em { line += " | evaluation \(model.devMetric.line(em))" }
            context.log(line + note)
            if step % c.evalPrintFreq == 0 || step == o.totalSteps {
                lastWindowLoss = avg
                windowLoss = 0
                windowCount = 0
            }
        }
        do {
            // A graceful stop inside the eval of the step it saved: that eval is still owed, and
            // so is the progress line after it, which closes the loss window (else the next
            // window would hold two windows' losses, and final_loss differ from an unstopped run).
            if state.step > 0, isEvalStep(state.step), state.lastEvalStep != state.step {
                let em = try evalNow()
                report(state.step, em, note: " (owed by the stopped attempt)")
                // The checkpoint resumed from lacks them (a save of its step keeps the first one
                // committed): its state file is brought up to what an unstopped run saved there,
                // so it ends bit-identical and a rerun of the finished run owes nothing again.
                fill(state.step)
                try context.fs.writeAtomically(ckpt.root + "/step-\(state.step)/" + Trainer.stateFile, try jsonEncoder().encode(state),
                                               tag: context.token)
            }
            while state.step < o.totalSteps {
                try context.checkCancelled()
                let examples = order.batch(at: state.step)
                let t0 = monotonicNow()
                let stats = try model.trainStep(examples: examples, grads: grads, rng: &rng)
                state.step += 1
                let step = state.step
                guard stats.loss.isFinite else {
                    throw JobError.permanent("\(label): the loss is \(Self.number(stats.loss)) at step \(step)", field: "params.lr",
                                             hint: diverged())
                }
                if step % c.accumulationSteps == 0 {
                    lr = o.step(&optimizer, params: params.buffer, grads: grads.buffer).lr
                    grads.zero()
                    state.optimizerSteps += 1
                    // A finite loss can still give an update that overflows the weights (a huge
                    // lr): stop before they are evaluated, kept as best_dev or saved.
                    guard Elementwise.allFinite(params.buffer.baseAddress!, count: params.buffer.count) else {
                        throw JobError.permanent("\(label): the weights are not finite after the update of step \(step) (its loss \(Self.number(stats.loss))); nothing of it was saved",
                                                 field: "params.lr", hint: diverged())
                    }
                }
                trainSeconds += monotonicNow() - t0
                tokens += stats.tokens
                windowLoss += stats.loss
                windowCount += 1
                context.progress.update(step: step, total: o.totalSteps, loss: stats.loss)
                var em: Double? = nil
                if isEvalStep(step) { em = try evalNow() }
                report(step, em)
                if step % c.saveFreq == 0 || step == o.totalSteps { try save(step) }
            }
        } catch let e as CancellationError where e.reason != .leaseLost {
            // A graceful stop (SIGTERM, timeout, cancel): keep the work done so far, and say where it stands.
            if state.step > 0 {
                do {
                    try save(state.step)
                    context.log("\(label): stopped (\(e.reason.rawValue)) at step \(state.step) of \(o.totalSteps); step-\(state.step) saved, the next attempt resumes there")
                } catch {
                    context.log("\(label): stopped (\(e.reason.rawValue)) at step \(state.step) of \(o.totalSteps); saving step-\(state.step) failed (\(error)), "
                        + "the next attempt resumes from \(lastSaved > 0 ? "step-\(lastSaved)" : "the start")")
                }
            } else {
                context.log("\(label): stopped (\(e.reason.rawValue)) before the first step")
            }
            throw e
        }
        if lastSaved != state.step { try save(state.step) }  // resumed at the very end
        return TrainResult(
            steps: state.step, optimizerSteps: state.optimizerSteps, resumedFrom: resumedFrom, metric: model.devMetric.name,
            finalMetric: state.lastEM.map(model.devMetric.report), bestMetric: state.bestDevEM.map(model.devMetric.report),
            bestStep: state.bestStep, finalLoss: lastWindowLoss,
            tokensPerS: trainSeconds > 0 ? Double(tokens) / trainSeconds : nil,
            latest: ckpt.root + "/step-\(state.step)", bestDev: ckpt.named("best_dev"))
    }

    /// Runs the model's eval with progress lines (each tenth, and at least every 30 s: a dev set
    /// of thousands takes minutes, which progress.json, counting training steps, does not show);
    /// nil without dev data.
    func evaluate() throws -> Double? {
        let t0 = monotonicNow()
        var lastLine = t0, lastTenth = 0, started = false
        let em = try model.evaluate { done, total in
            try self.context.checkCancelled()
            guard total > 0 else { return }
            let now = monotonicNow()
            if !started {
                started = true
                self.context.progress.phase("evaluating \(done) / \(total)")  // status showed the step standing still
            }
            if done == total {
                self.context.log("\(self.label): evaluated \(total) examples in \(self.fmt(now - t0, 1)) s")
            } else if done * 10 / total > lastTenth || now - lastLine >= 30 {
                (lastTenth, lastLine) = (done * 10 / total, now)
                self.context.log("\(self.label): evaluating, \(done) / \(total) examples, \(self.fmt(Double(done) / max(now - t0, 1e-9), 1)) a second")
                self.context.progress.phase("evaluating \(done) / \(total)")
            }
        }
        return em
    }

    /// One checkpoint's files: the Hugging Face folder, `optimizer.safetensors`,
    /// `trainer_state.json`, and `grads.safetensors` when micro-batches await their update.
    func write(into dir: String, state: TrainerState, optimizer: AdamState, grads: ParameterSlab) throws {
        try model.saveModel(into: dir)
        try optimizer.save(to: dir + "/" + Trainer.optimizerFile, layout: model.params.layout)
        if state.pendingGradients { try grads.save(to: dir + "/" + Trainer.gradsFile, metadata: ["format": "fidq-grads"]) }
        try jsonEncoder().encode(state).write(to: URL(fileURLWithPath: dir + "/" + Trainer.stateFile))
    }

    /// `dir`, a folder of this job's, where it is once the attempt has failed (a queue moves the
    /// job's folder from running/ to failed/): what a hint names.
    func kept(_ dir: String) -> String {
        dir.hasPrefix(context.folder + "/") ? context.stoppedFolder + dir.dropFirst(context.folder.count) : dir
    }

    /// Loads parameters, optimizer, gradients and trainer state from checkpoint `dir` (whose
    /// complete predecessor, if any, is step `older`).
    func restore(from dir: String, step: Int, older: Int?, optimizer: inout any Optimizer, grads: ParameterSlab) throws -> TrainerState {
        // Permanent (retrying reads the same files) and with the way on that keeps the work: the
        // folders before it are intact.
        func damaged(_ what: String) -> JobError {
            let rel = dir.hasPrefix(context.folder + "/") ? String(dir.dropFirst(context.folder.count + 1)) : dir
            let from = older.map { "resumes from step-\($0)" } ?? "starts from step 0 (best_dev stays)"
            return JobError.permanent("checkpoint \(dir): \(what)",
                                      hint: "the checkpoint folder is damaged: remove \(rel) from \(context.stoppedFolder), then \(context.runAgain) \(from); or " + context.startOver)
        }
        let state: TrainerState
        do {
            state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/" + Trainer.stateFile)))
        } catch { throw damaged("cannot read \(Trainer.stateFile) (\(error))") }
        guard state.format == "fidq-trainer", state.version == 1 else {
            throw damaged("\(Trainer.stateFile) has format '\(state.format)' version \(state.version), expected fidq-trainer 1")
        }
        guard state.step == step, RNG(state: state.rng) != nil else {
            throw damaged("\(Trainer.stateFile) holds step \(state.step) (folder says \(step)) or a malformed rng")
        }
        guard state.seed == config.seed else {
            throw JobError.permanent("checkpoint \(dir) was trained with seed \(state.seed), the params say \(config.seed)",
                                     field: "params.seed", hint: "keep the seed of a resumed job; " + context.startOver)
        }
        // Another batch size, lr, model or data would be mixed into this run's weights and moments
        // silently (a job edited before `fidq retry`; data regenerated under the same path).
        if let saved = state.settings, !settings.isEmpty, saved != settings {
            let keys = Set(saved.keys).union(settings.keys).filter { saved[$0] != settings[$0] }.sorted()
            func text(_ v: JSONValue?) -> String {
                switch v {
                case nil: return "unset"
                case .string(let s)?: return s
                case .number(let d)?: return Self.number(d)
                case .bool(let b)?: return String(b)
                case .null?: return "null"
                case let other?: return String(decoding: (try? JSONEncoder().encode(other)) ?? Data(), as: UTF8.self)
                }
            }
            let listed = keys.prefix(4).map { "\($0): \(text(saved[$0])) there, \(text(settings[$0])) here" }.joined(separator: "; ")
            throw JobError.permanent("checkpoint \(kept(dir)) belongs to a run of other settings (\(listed)\(keys.count > 4 ? "; …" : ""))",
                                     field: keys.first.flatMap { $0.hasPrefix("model.") ? nil : "params." + $0 },
                                     hint: "a resumed run keeps what it started with (only total_steps, scheduler_steps, eval_freq, save_freq, "
                                        + "eval_print_freq, keep_last and threads may change): set it back to resume, or train a new run from "
                                        + "model_path \(kept(dir)) (copied out first: starting over removes it); or " + context.startOver)
        }
        let adam: AdamState
        do {
            try model.params.load(from: SafeTensorsFile(path: dir + "/" + Trainer.weightsFile))
            adam = try AdamState.load(from: dir + "/" + Trainer.optimizerFile, layout: model.params.layout)
            grads.zero()
            if state.pendingGradients { try grads.load(from: SafeTensorsFile(path: dir + "/" + Trainer.gradsFile)) }
        } catch let e as CancellationError {
            throw e
        } catch {
            throw damaged("\(error)")  // a truncated or missing file was retried as transient
        }
        guard adam.step == state.optimizerSteps else {
            throw damaged("optimizer step \(adam.step) differs from the trainer's \(state.optimizerSteps)")
        }
        optimizer.state = adam
        return state
    }

    func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

    /// A number as `%g` writes it: 1e+30, not thirty-one digits; nan, not -nan.
    static func number(_ x: Double) -> String { x.isNaN ? "nan" : String(format: "%g", x) }
}
