// TrainerTests: FiD's loop semantics on a toy Trainable (summed accumulation, one clipped update
// per optimizer step, micro-batch counting of eval and save) and exact resume after a graceful
// stop and after a crash between checkpoints.
import Foundation
import Testing
@testable import FiD
@testable import Jobs
import Tensor

/// Least squares y ≈ w·x over 12 fixed examples, with RNG noise on the targets (like dropout, it
/// makes the result depend on the RNG state surviving a resume).
final class ToyModel: Trainable {
    let params: ParameterSlab
    let xs: [[Float]], ys: [Float]
    var trainCount: Int { xs.count }
    /// Micro-batches run by this instance, and a hook before each.
    var calls = 0
    var beforeStep: ((Int) throws -> Void)?
    /// Called at the start of each eval with the micro-batches run so far.
    var beforeEval: ((Int) throws -> Void)?
    /// What each eval returns instead of the metric (a model computing NaN).
    var evalOverride: Double?
    var log: [[Int]] = []

    init() {
        var l = ParameterLayout()
        l.add("w", [4])
        params = ParameterSlab(layout: l)
        var rng = RNG(seed: 5)
        xs = (0..<12).map { _ in rng.normalArray(4) }
        ys = xs.map { x in 0.5 * x[0] - 2 * x[1] + x[2] + 0.25 * x[3] }
    }

    func trainStep(examples: [Int], grads: ParameterSlab, rng: inout RNG) throws -> TrainStepStats {
        try beforeStep?(calls)
        calls += 1
        log.append(examples)
        let w = params["w"], g = grads["w"]
        var loss = 0.0
        for k in examples {
            let noisy = ys[k] + 0.01 * rng.normal()
            var pred: Float = 0
            for i in 0..<4 { pred += w[i] * xs[k][i] }
            let r = pred - noisy
            loss += Double(r * r) / Double(examples.count)
            for i in 0..<4 { g[i] += 2 * r * xs[k][i] / Float(examples.count) }
        }
        return TrainStepStats(loss: loss, tokens: examples.count)
    }

    /// Higher is better: minus the noiseless mean squared error.
    func evaluate(_ report: (Int, Int) throws -> Void) throws -> Double? {
        try beforeEval?(calls)
        var mse = 0.0
        for k in 0..<xs.count {
            var pred: Float = 0
            for i in 0..<4 { pred += params["w"][i] * xs[k][i] }
            mse += Double((pred - ys[k]) * (pred - ys[k])) / Double(xs.count)
            try report(k + 1, xs.count)
        }
        return evalOverride ?? -mse
    }

    func saveModel(into dir: String) throws {
        try params.save(to: dir + "/" + Trainer.weightsFile)
    }
}

/// `toy.train`: the Trainer over a fresh ToyModel, configured by the test.
struct ToyKind: JobKind {
    struct Params: JobParams {}
    let config: TrainerConfig
    var settings: [String: JSONValue] = [:]
    let setUp: @Sendable (ToyModel) -> Void
    var name: String { "toy.train" }

    func run(_ p: Params, _ context: JobContext) throws -> TrainResult {
        let model = ToyModel()
        setUp(model)
        let trainer = Trainer(config: config, model: model, context: context, label: "toy")
        trainer.settings = settings
        return try trainer.run()
    }
}

/// Runs `toy.train` in the foreground into `out` (a folder kept across runs, as a job's is).
@discardableResult
func runToy(_ config: TrainerConfig, out: String, cancel: CancellationToken = CancellationToken(), settings: [String: JSONValue] = [:],
            reproduce: String? = nil, setUp: @escaping @Sendable (ToyModel) -> Void = { _ in }) throws -> JSONValue {
    let registry = KindRegistry()
    registry.register(ToyKind(config: config, settings: settings, setUp: setUp))
    let job = out + ".json"
    try Data(#"{"kind": "toy.train", "id": "toy"}"#.utf8).write(to: URL(fileURLWithPath: job))
    var run = ForegroundRun(file: job, workspace: NSTemporaryDirectory())
    run.outDir = out
    run.reproduce = reproduce
    return try run.run(registry: registry, cancel: cancel)
}

func scratch(_ name: String = #function) -> String {
    let dir = NSTemporaryDirectory() + "fidq-fid-\(name.filter { $0.isLetter })-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func weights(_ dir: String) throws -> [Float] { try SafeTensors.read(dir + "/" + Trainer.weightsFile).tensor("w").data }

func toyConfig(total: Int = 10, accumulation: Int = 1, batch: Int = 2) -> TrainerConfig {
    var c = TrainerConfig()
    c.optim = OptimConfig(optim: .adamw, scheduler: .linear, lr: 0.05, weightDecay: 0.01, warmupSteps: 2, totalSteps: total, clip: 0.5)
    c.batchSize = batch
    c.accumulationSteps = accumulation
    c.evalFreq = 3
    c.saveFreq = 4
    c.evalPrintFreq = 2
    c.seed = 7
    return c
}

struct TrainerTests {
    @Test func dataOrderIsAPermutationPerEpochDroppingTheLastPartialBatch() {
        var order = DataOrder(count: 7, batchSize: 2, seed: 1)
        #expect(order.batchesPerEpoch == 3)
        let epoch0 = (0..<3).flatMap { order.batch(at: $0) }, epoch1 = (3..<6).flatMap { order.batch(at: $0) }
        #expect(Set(epoch0).count == 6 && Set(epoch1).count == 6)
        #expect(epoch0 != epoch1, "a fresh permutation each epoch")
        var again = DataOrder(count: 7, batchSize: 2, seed: 1)
        #expect(again.batch(at: 4) == order.batch(at: 4), "fixed by the seed and the step alone")
        var other = DataOrder(count: 7, batchSize: 2, seed: 2)
        #expect((0..<3).flatMap { other.batch(at: $0) } != epoch0)
    }

    /// Accumulation sums gradients; one clip + AdamW update + scheduler step per optimizer step.
    @Test func accumulatedStepEqualsSummedGradientsAndOneUpdate() throws {
        let c = toyConfig(total: 6, accumulation: 3, batch: 2)
        let out = scratch()
        try runToy(c, out: out)
        // The same arithmetic by hand.
        let model = ToyModel()
        var order = DataOrder(count: 12, batchSize: 2, seed: 7)
        var rng = RNG(seed: 7)
        let grads = ParameterSlab(layout: model.params.layout)
        var opt = c.optim.makeOptimizer(count: 4)
        for step in 0..<6 {
            _ = try model.trainStep(examples: order.batch(at: step), grads: grads, rng: &rng)
            if (step + 1) % 3 == 0 {
                c.optim.step(&opt, params: model.params.buffer, grads: grads.buffer)
                grads.zero()
            }
        }
        #expect(opt.state.step == 2)
        #expect(try weights(out + "/out/checkpoint/step-6") == Array(model.params.buffer))
        let state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/out/checkpoint/step-6/trainer_state.json")))
        #expect(state.step == 6 && state.optimizerSteps == 2 && !state.pendingGradients)
    }

    @Test func evalAndSaveCountMicroBatchesAndResultNamesTheCheckpoints() throws {
        let out = scratch()
        let value = try runToy(toyConfig(total: 10), out: out)
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: out + "/out/checkpoint").filter { !$0.hasPrefix(".") }.sorted()
        // save_freq 4 → step-4, step-8, and the final step-10; keep_last 2 prunes step-4.
        #expect(names == ["best_dev", "latest", "step-10", "step-8"], "\(names)")
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        for s in [3, 6, 9, 10] { #expect(log.contains("toy: \(s) / 10 |") && log.contains("evaluation"), "eval at \(s)") }
        #expect(log.contains("toy: 2 / 10 | train") && log.contains("tokens/s"))
        // The eval says how far it is as it goes, not only when done.
        #expect(log.contains("toy: evaluating, ") && log.contains(" examples, ") && log.contains("toy: evaluated "), "\(log.suffix(800))")
        guard case .object(let r) = value, case .number(let steps)? = r["steps"], case .string(let latest)? = r["latest"],
              case .number(let best)? = r["best_em"], case .number(let final)? = r["final_em"] else {
            Issue.record("result: \(value)")
            return
        }
        #expect(steps == 10 && latest.hasSuffix("/out/checkpoint/step-10") && best >= final)
        let progress = try String(contentsOfFile: out + "/progress.json", encoding: .utf8)
        #expect(progress.contains("\"step\" : 10") && progress.contains("\"total\" : 10"))
        // Run again: nothing is left, and the log says so (it said "micro-batches 11…10").
        try runToy(toyConfig(total: 10), out: out)
        let again = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(again.contains("toy: all 10 micro-batches done already") && !again.contains("11…10"), "\(again.suffix(600))")
    }

    /// A graceful stop saves the step it reached; the next run resumes there and ends bit-equal.
    @Test func gracefulStopSavesAndResumeEndsBitEqual() throws {
        let c = toyConfig(total: 11, accumulation: 3)
        let reference = scratch() + "/ref"
        try runToy(c, out: reference)
        let out = scratch() + "/job"
        let token = CancellationToken()
        #expect(throws: Error.self) {
            try runToy(c, out: out, cancel: token) { m in m.beforeStep = { calls in if calls == 4 { token.cancel(.shutdown) } } }
        }
        let saved = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/out/checkpoint/step-5/trainer_state.json")))
        #expect(saved.step == 5 && saved.pendingGradients, "stopped mid-accumulation: gradients kept")
        let stopped = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(stopped.contains("toy: stopped (shutdown) at step 5 of 11; step-5 saved, the next attempt resumes there"), "\(stopped.suffix(600))")
        try runToy(c, out: out)
        #expect(try weights(out + "/out/checkpoint/step-11") == weights(reference + "/out/checkpoint/step-11"))
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.contains("resumed from") && log.contains("(step 5,"))
    }

    /// An unstopped run of `c` (`reference`) and one stopped gracefully inside the eval of `step` (`out`).
    func stoppedInEval(_ c: TrainerConfig, at step: Int) throws -> (reference: String, out: String) {
        let reference = scratch() + "/ref"
        try runToy(c, out: reference)
        let out = scratch() + "/job"
        let token = CancellationToken()
        #expect(throws: Error.self) {
            try runToy(c, out: out, cancel: token) { m in m.beforeEval = { if $0 == step { token.cancel(.shutdown) } } }
        }
        return (reference, out)
    }

    /// A graceful stop inside an eval saves that step; the resumed run owes and runs the eval first.
    @Test func stopDuringEvalIsEvaluatedOnResume() throws {
        let c = toyConfig(total: 9, accumulation: 1)
        let (reference, out) = try stoppedInEval(c, at: 6)
        let saved = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/out/checkpoint/step-6/trainer_state.json")))
        #expect(saved.step == 6 && saved.lastEvalStep == 3)
        let value = try runToy(c, out: out)
        let refValue = try String(contentsOfFile: reference + "/result.json", encoding: .utf8)
        #expect(refValue.contains("\"best_step\" : \(number(value, "best_step").map { Int($0) } ?? -1)"), "\(value)")
        #expect(try weights(out + "/out/checkpoint/best_dev") == weights(reference + "/out/checkpoint/best_dev"))
        #expect(try String(contentsOfFile: out + "/log.txt", encoding: .utf8).contains("owed by the stopped attempt"))
    }

    /// A stop inside the last step's eval: the resumed run's owed eval is written into that step's
    /// checkpoint (a save of a committed step keeps the first), so it ends byte-equal to an
    /// unstopped run's and a rerun of the finished run does not evaluate again.
    @Test func stopDuringTheLastEvalEndsWithTheUnstoppedState() throws {
        let c = toyConfig(total: 9, accumulation: 1)
        let (reference, out) = try stoppedInEval(c, at: 9)
        let state = "/out/checkpoint/step-9/" + Trainer.stateFile
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + state)) != Data(contentsOf: URL(fileURLWithPath: reference + state)))
        try runToy(c, out: out)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + state)) == Data(contentsOf: URL(fileURLWithPath: reference + state)))
        try runToy(c, out: out)
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.components(separatedBy: "owed by the stopped attempt").count == 2, "\(log.suffix(800))")
        // Its line shows the lr of the last update, as the unstopped run's line there does (it
        // showed the next update's).
        func lrAtTheEnd(_ text: String) -> String? {
            let line = text.split(separator: "\n").last { $0.contains(": 9 / 9 |") && $0.contains("evaluation") }
            return line?.components(separatedBy: "| lr ").dropFirst().first?.components(separatedBy: " |").first
        }
        let refLog = try String(contentsOfFile: reference + "/log.txt", encoding: .utf8)
        #expect(lrAtTheEnd(log) != nil && lrAtTheEnd(log) == lrAtTheEnd(refLog), "\(String(describing: lrAtTheEnd(log))) \(String(describing: lrAtTheEnd(refLog)))")
    }

    /// A stop inside an eval at a print step: the resumed run's owed eval also closes that step's
    /// loss window, so `final_loss` (and each later window) equals an unstopped run's; it held
    /// the stale window (the last step's eval: the window before it).
    @Test func stopDuringEvalKeepsTheLossWindows() throws {
        let c = toyConfig(total: 9, accumulation: 1)
        let reference = scratch() + "/ref"
        let refValue = try runToy(c, out: reference)
        for stopAt in [6, 9] {
            let out = scratch() + "/job\(stopAt)"
            let token = CancellationToken()
            #expect(throws: Error.self) {
                try runToy(c, out: out, cancel: token) { m in m.beforeEval = { if $0 == stopAt { token.cancel(.shutdown) } } }
            }
            let value = try runToy(c, out: out)
            #expect(number(value, "final_loss") == number(refValue, "final_loss"), "stop at \(stopAt): \(value) vs \(refValue)")
            let lines = { (path: String) in
                try String(contentsOfFile: path + "/log.txt", encoding: .utf8).split(separator: "\n")
                    .compactMap { l in l.range(of: " | train ").map { r in String(l[r.upperBound...].prefix(6)) } }
            }
            #expect(try lines(out).suffix(2) == lines(reference).suffix(2), "stop at \(stopAt)")
        }
    }

    /// A crash between checkpoints (no save) resumes from the last step-N and redoes the rest.
    @Test func crashResumesFromLatestAndEndsBitEqual() throws {
        let c = toyConfig(total: 13, accumulation: 3)
        let reference = scratch() + "/ref"
        try runToy(c, out: reference)
        let out = scratch() + "/job"
        struct Crash: Error {}
        #expect(throws: Error.self) { try runToy(c, out: out) { m in m.beforeStep = { if $0 == 10 { throw Crash() } } } }
        #expect(FileManager.default.fileExists(atPath: out + "/out/checkpoint/step-8"))
        #expect(!FileManager.default.fileExists(atPath: out + "/out/checkpoint/step-10"))
        let steps = NSLockedBox(0)
        try runToy(c, out: out) { m in m.beforeStep = { _ in steps.value += 1 } }
        #expect(steps.value == 5, "resumed at step 8 of 13")
        #expect(try weights(out + "/out/checkpoint/step-13") == weights(reference + "/out/checkpoint/step-13"))
        #expect(try weights(out + "/out/checkpoint/best_dev") == weights(reference + "/out/checkpoint/best_dev"))
    }

    /// A dev metric that is not a number (the model computes NaN) stops the run for good, naming
    /// lr, before best_dev keeps those weights (a retry would compute the same).
    @Test func aDevMetricThatIsNotANumberStopsTheRun() throws {
        let out = scratch()
        do {
            try runToy(toyConfig(total: 10), out: out) { $0.evalOverride = .nan }
            Issue.record("the run went on with a dev metric of nan")
        } catch let e as JobError {
            #expect(e.permanence == .permanent && e.field == "params.lr" && e.message.contains("toy: the dev em is nan at step 3"), "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/out/checkpoint/best_dev"))
    }

    @Test func aCheckpointOfAnotherSeedIsRefused() throws {
        let out = scratch() + "/job"
        try runToy(toyConfig(total: 4), out: out)
        var c = toyConfig(total: 8)
        c.seed = 8
        do {
            try runToy(c, out: out)
            Issue.record("resumed across seeds")
        } catch let e as JobError {
            #expect(e.field == "params.seed", "\(e)")
            // `fidq run` has no retry: the hint empties its out/ (it said `fidq retry --fresh`).
            #expect(e.hint == "keep the seed of a resumed job; rm -r \(out)/out, then the same fidq run, starts over", "\(e)")
        }
    }
}

/// A mutable box the @Sendable set-up closures can count in.
final class NSLockedBox<T>: @unchecked Sendable {
    var value: T
    init(_ v: T) { value = v }
}

/// What a resumed run may not change is refused by name, not mixed in (a job edited before
/// `fidq retry`, data regenerated under one path); total_steps below the checkpoint is refused; a
/// damaged latest checkpoint is permanent and names the step its removal resumes from.
struct TrainerResumeTests {
    func refusal(_ body: () throws -> Void) -> JobError? {
        do { try body() } catch let e as JobError { return e } catch { Issue.record("not a JobError: \(error)") }
        return nil
    }

    @Test func aCheckpointOfOtherSettingsIsRefusedNamingThem() throws {
        let out = scratch() + "/job"
        let settings: [String: JSONValue] = ["per_gpu_batch_size": .number(2), "train_data": .string("12 examples, 5a"), "model.d_model": .number(4)]
        try runToy(toyConfig(total: 4), out: out, settings: settings)
        var other = settings
        other["per_gpu_batch_size"] = .number(3)
        other["train_data"] = .string("9 examples, 77")
        let e = try #require(refusal { try runToy(toyConfig(total: 8), out: out, settings: other) })
        #expect(e.permanence == .permanent && e.field == "params.per_gpu_batch_size", "\(e)")
        #expect(e.message.contains("belongs to a run of other settings (per_gpu_batch_size: 2 there, 3 here; train_data: 12 examples, 5a there, 9 examples, 77 here)"), "\(e)")
        #expect(e.hint?.contains("only total_steps, scheduler_steps, eval_freq, save_freq, eval_print_freq, keep_last and threads may change") == true, "\(e)")
        var model = settings
        model["model.d_model"] = .number(8)
        let m = try #require(refusal { try runToy(toyConfig(total: 8), out: out, settings: model) })
        #expect(m.field == nil && m.message.contains("model.d_model: 4 there, 8 here"), "\(m)")
        // The same settings resume (and a longer run is one of the changes allowed).
        let result = try runToy(toyConfig(total: 8), out: out, settings: settings)
        #expect(number(result, "steps") == 8 && number(result, "resumed_from") == 4, "\(result)")
    }

    /// A queued job's folder moves from running/ to failed/ when the attempt fails: hints name
    /// a checkpoint where it will then be.
    @Test func hintsNameTheCheckpointWhereTheFailedJobKeepsIt() throws {
        let fs = PosixFileSystem()
        let context = JobContext(id: "t", kind: "toy.train", attempt: 1, maxAttempts: 3, folder: "/q/running/t@a.1",
                                 paths: PathPolicy(workspace: "/tmp", queue: "/q"), fs: fs, cancellation: CancellationToken(),
                                 progress: ProgressReporter(path: nil, fs: fs, bar: false, label: "t", line: nil),
                                 log: JobLog(path: nil, fs: fs, echo: nil), threads: 1)
        context.stoppedFolder = "/q/failed/t"
        let trainer = Trainer(config: toyConfig(), model: ToyModel(), context: context, label: "toy")
        #expect(trainer.kept("/q/running/t@a.1/out/checkpoint/step-8") == "/q/failed/t/out/checkpoint/step-8")
        #expect(trainer.kept("/elsewhere/step-8") == "/elsewhere/step-8")
    }

    @Test func fingerprintsKeepTheirLeadingZeros() {
        #expect(ExamplesFingerprint.hex(0xabc) == "0000000000000abc" && ExamplesFingerprint.hex(.max) == "ffffffffffffffff")
    }

    @Test func totalStepsBelowTheCheckpointIsRefused() throws {
        let out = scratch() + "/job"
        try runToy(toyConfig(total: 8), out: out)
        let e = try #require(refusal { try runToy(toyConfig(total: 5), out: out) })
        #expect(e.permanence == .permanent && e.field == "params.total_steps", "\(e)")
        #expect(e.message.hasSuffix("step-8 is at step 8, past total_steps 5"), "\(e)")
        let again = try runToy(toyConfig(total: 8), out: out)
        #expect(number(again, "steps") == 8, "the finished run, asked again, is done: \(again)")
    }

    @Test func aMovedScheduleIsLogged() throws {
        let out = scratch() + "/job"
        try runToy(toyConfig(total: 8), out: out)
        try runToy(toyConfig(total: 12), out: out)
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.contains("toy: the linear schedule now reaches lr 0 at optimizer step 12, not 8 as when step-8 was saved"), "\(log)")
        #expect(log.contains("the lr there is 0.02, was 0 (FiD keeps the checkpoint's schedule)"), "\(log)")
    }

    @Test func aTruncatedLatestCheckpointIsPermanentAndNamesTheStepBefore() throws {
        let c = toyConfig(total: 12)
        let reference = scratch() + "/ref"
        try runToy(c, out: reference)
        let out = scratch() + "/job"
        struct Crash: Error {}
        #expect(throws: (any Error).self) { try runToy(c, out: out) { m in m.beforeStep = { if $0 == 9 { throw Crash() } } } }
        let step8 = out + "/out/checkpoint/step-8/" + Trainer.weightsFile
        let bytes = try #require(FileManager.default.contents(atPath: step8))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: step8))
        let e = try #require(refusal { try runToy(c, out: out) })
        #expect(e.permanence == .permanent && e.message.hasPrefix("checkpoint \(out)/out/checkpoint/step-8: "), "\(e)")
        #expect(e.hint?.hasPrefix("the checkpoint folder is damaged: remove out/checkpoint/step-8 from \(out), then the same fidq run resumes from step-4; or rm -r") == true, "\(e)")
        // A kind's subcommand is named as the command to run again (it said "the same fidq run").
        let named = try #require(refusal { try runToy(c, out: out, reproduce: "fidq toy-train --x 1") })
        #expect(named.hint?.contains("then the same fidq toy-train resumes from step-4; or rm -r") == true
                && named.hint?.hasSuffix("/out, then the same fidq toy-train, starts over") == true, "\(named)")
        // Following the hint keeps the work before it: the run ends as an uninterrupted one.
        try FileManager.default.removeItem(atPath: out + "/out/checkpoint/step-8")
        let result = try runToy(c, out: out)
        #expect(number(result, "resumed_from") == 4, "\(result)")
        #expect(try weights(out + "/out/checkpoint/step-12") == weights(reference + "/out/checkpoint/step-12"))
    }
}
